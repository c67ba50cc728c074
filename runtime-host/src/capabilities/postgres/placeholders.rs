//! How many parameters PostgreSQL expects for a statement prepared without
//! declared types (as Spin's tokio-postgres prepares it): the highest `$N`
//! the statement uses, outside string literals, quoted names, dollar-quoted
//! bodies and comments.

/// The highest placeholder number in `sql` (0 when it has none).
pub fn count(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut highest = 0;
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b'\'' => skip_quoted(bytes, i, b'\''),
            b'"' => skip_quoted(bytes, i, b'"'),
            b'-' if bytes.get(i + 1) == Some(&b'-') => skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_block_comment(bytes, i),
            b'$' if i > 0 && is_word(bytes[i - 1]) => i + 1,
            b'$' => match digits(bytes, i + 1) {
                Some((n, end)) => {
                    highest = highest.max(n);
                    end
                }
                None => skip_dollar_quoted(bytes, i),
            },
            _ => i + 1,
        };
    }
    highest
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `$` followed by digits: the number and where it ends.
fn digits(bytes: &[u8], start: usize) -> Option<(usize, usize)> {
    let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    if end == start {
        return None;
    }
    let n = std::str::from_utf8(&bytes[start..end]).ok()?.parse().ok()?;
    Some((n, end))
}

/// Past a literal opened at `start` by `quote` (a doubled quote escapes it).
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_line(bytes: &[u8], start: usize) -> usize {
    bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| start + p + 1)
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    bytes[start + 2..].windows(2).position(|w| w == b"*/").map_or(bytes.len(), |p| start + 2 + p + 2)
}

/// Past a `$tag$ ... $tag$` body opened at `start`; a lone `$` is one byte.
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> usize {
    let tag_len = bytes[start + 1..].iter().take_while(|&&b| is_word(b)).count();
    if bytes.get(start + 1 + tag_len) != Some(&b'$') {
        return start + 1;
    }
    let tag = &bytes[start..start + tag_len + 2];
    let body = start + tag.len();
    bytes[body..].windows(tag.len()).position(|w| w == tag).map_or(bytes.len(), |p| body + p + tag.len())
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_the_highest_placeholder() {
        assert_eq!(count("SELECT 1"), 0);
        assert_eq!(count("SELECT $1, $2"), 2);
        assert_eq!(count("SELECT $3"), 3);
        assert_eq!(count("UPDATE t SET a = $2 WHERE b = $1 AND c = $1"), 2);
        assert_eq!(count("VALUES ($1,$10)"), 10);
    }

    #[test]
    fn ignores_literals_names_comments_and_dollar_quoted_bodies() {
        assert_eq!(count("SELECT '$2', 'it''s $3', $1"), 1);
        assert_eq!(count("SELECT \"a$2\", $1"), 1);
        assert_eq!(count("SELECT $1 -- $2\n"), 1);
        assert_eq!(count("SELECT /* $2 */ $1"), 1);
        assert_eq!(count("SELECT $$ $2 $$, $tag$ $3 $tag$, $1"), 1);
        assert_eq!(count("SELECT a$2 FROM t"), 0);
    }
}
