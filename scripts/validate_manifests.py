"""Validates every manifest under knative/ strictly, without a cluster.

Renders each overlay (and the example Secret generator) with
`kubectl kustomize`, then checks each object:
  - core kinds with kubernetes-validate --strict against a pinned Kubernetes;
  - custom kinds (Knative, Kafka, Prometheus Operator, cert-manager) against
    the JSON schemas in knative/schemas/ (unknown fields, missing required
    fields and bad enum values are errors); their embedded core types
    (containers, volumes, selectors) use the same pinned Kubernetes schemas.
Then proves the checks bite: for a copy of one object of every kind it seeds
a typo (a renamed field, top level and nested), and for custom kinds also a
bad enum value and a missing required field, and requires each to fail.

Usage: validate_manifests.py [--render-dir DIR]
"""

import argparse
import copy
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv

# The Kubernetes release the manifests target (oldest supported one we test).
KUBERNETES_VERSION = "1.33.0"

ROOT = pathlib.Path(__file__).resolve().parent.parent
KNATIVE = ROOT / "knative"
OVERLAYS = ["overlays/parkd", "overlays/spinkube"]

# Maps whose keys are data (names, labels, quantities), not schema fields:
# a renamed key there is not a typo a schema can see.
FREE_FORM = {
    "labels", "annotations", "matchLabels", "data", "stringData", "binaryData",
    "attributes", "nodeSelector", "hard", "requests", "limits", "default",
    "defaultRequest", "max", "min", "maxLimitRequestRatio", "extensions",
    "params", "exact", "prefix", "suffix",
}


def is_core(api_version: str) -> bool:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def render(target: pathlib.Path, kubectl: str) -> list:
    out = subprocess.run([kubectl, "kustomize", str(target)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def render_examples(kubectl: str) -> list:
    """The example Secret generator, with its *.example files in place."""
    with tempfile.TemporaryDirectory() as tmp:
        dst = pathlib.Path(tmp) / "secrets"
        shutil.copytree(KNATIVE / "examples" / "secrets", dst)
        for example in dst.glob("*.example"):
            example.rename(example.with_suffix(""))
        return render(dst, kubectl)


class CustomSchemas:
    def __init__(self):
        version = KUBERNETES_VERSION
        defs = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
        registry = referencing.Resource.from_contents(defs) @ referencing.Registry()
        self.schemas = {}
        for path in sorted((KNATIVE / "schemas").glob("*.json")):
            schema = json.loads(path.read_text())
            registry = referencing.Resource.from_contents(schema) @ registry
            api = schema["properties"]["apiVersion"]["const"]
            kind = schema["properties"]["kind"]["const"]
            self.schemas[(api, kind)] = schema
        self.registry = registry

    def errors(self, obj: dict) -> list:
        schema = self.schemas.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            return [f"no schema in knative/schemas/ for {obj.get('apiVersion')} {obj.get('kind')}: write one"]
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


def core_errors(obj: dict) -> list:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "<root>"
        return [f"{path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no Kubernetes {KUBERNETES_VERSION} schema: {e}"]


def check(obj: dict, custom: CustomSchemas) -> list:
    return core_errors(obj) if is_core(obj["apiVersion"]) else custom.errors(obj)


def name_of(obj: dict) -> str:
    return f"{obj['apiVersion']} {obj['kind']} {obj.get('metadata', {}).get('name', '?')}"


# --- Seeded faults -----------------------------------------------------------

def nested_typo(obj: dict):
    """A copy with one schema field renamed as deep inside `spec` (or the first
    non-metadata field) as possible, outside free-form maps; None if none."""
    best = None

    def walk(node, path, depth):
        nonlocal best
        if isinstance(node, dict):
            for key, value in node.items():
                if path and path[-1] in FREE_FORM:
                    continue
                if depth >= 1 and (best is None or depth > best[1]):
                    best = (path + [key], depth)
                walk(value, path + [key], depth + 1)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, path + [i], depth)

    for top in obj:
        if top not in ("apiVersion", "kind", "metadata", "status"):
            walk(obj[top], [top], 1)
    if best is None:
        return None
    bad = copy.deepcopy(obj)
    *parents, key = best[0]
    node = bad
    for p in parents:
        node = node[p]
    node[key + "x"] = node.pop(key)
    return bad, ".".join(map(str, best[0]))


def top_typo(obj: dict):
    bad = copy.deepcopy(obj)
    fields = [k for k in bad if k not in ("apiVersion", "kind", "metadata")]
    if fields:
        bad[fields[0][:-1]] = bad.pop(fields[0])  # spec -> spe
        return bad, fields[0]
    bad["metadata"]["nmae"] = bad["metadata"].pop("name")
    return bad, "metadata.name"


def schema_faults(obj: dict, schema: dict):
    """Copies with a bad enum value and with a required field missing, at the
    first place in `obj` where the schema has an enum / a required list."""
    found = {}

    def walk(node, s, path):
        if "$ref" in s:
            return  # a core type: the Kubernetes schemas' faults are seeded above
        if "enum" in s and isinstance(node, str) and "enum" not in found:
            found["enum"] = path
        if isinstance(node, dict):
            for r in s.get("required", []):
                if r in node and "required" not in found and path:
                    found["required"] = path + [r]
            for key, value in node.items():
                sub = s.get("properties", {}).get(key)
                if sub is not None:
                    walk(value, sub, path + [key])
        elif isinstance(node, list) and "items" in s:
            for i, item in enumerate(node):
                walk(item, s["items"], path + [i])

    walk(obj, schema, [])
    faults = []
    for what, path in found.items():
        bad = copy.deepcopy(obj)
        node = bad
        for p in path[:-1]:
            node = node[p]
        if what == "enum":
            node[path[-1]] = node[path[-1]] + "-typo"
        else:
            del node[path[-1]]
        faults.append((bad, f"{what} at {'.'.join(map(str, path))}"))
    return faults


def self_test(objects: list, custom: CustomSchemas) -> list:
    failures = []
    seen = {}
    for obj in objects:
        seen.setdefault((obj["apiVersion"], obj["kind"]), obj)
    for (api, kind), obj in sorted(seen.items()):
        faults = [top_typo(obj)]
        nested = nested_typo(obj)
        if nested:
            faults.append(nested)
        if not is_core(api):
            faults += schema_faults(obj, custom.schemas[(api, kind)])
        missed = [where for bad, where in faults if not check(bad, custom)]
        failures += [f"{api} {kind}: a seeded fault ({where}) was NOT rejected" for where in missed]
        print(f"validate: {api} {kind}: {len(faults) - len(missed)}/{len(faults)} seeded faults rejected "
              f"({', '.join(where for _, where in faults)})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--render-dir", help="also write each rendered overlay here (for other checks)")
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args()

    custom = CustomSchemas()
    rendered = {o: render(KNATIVE / o, args.kubectl) for o in OVERLAYS}
    rendered["examples/secrets"] = render_examples(args.kubectl)
    if args.render_dir:
        out = pathlib.Path(args.render_dir)
        out.mkdir(parents=True, exist_ok=True)
        for target, objects in rendered.items():
            (out / (target.replace("/", "_") + ".yaml")).write_text(yaml.safe_dump_all(objects, sort_keys=False))

    errors = []
    everything = []
    for target, objects in rendered.items():
        kinds = {}
        for obj in objects:
            everything.append(obj)
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
            for e in check(obj, custom):
                errors.append(f"knative/{target}: {name_of(obj)}: {e}")
        print(f"validate: knative/{target}: {len(objects)} objects, {len(kinds)} kinds")
    for e in errors:
        print(f"validate: ERROR {e}", file=sys.stderr)
    failures = self_test(everything, custom)
    for f in failures:
        print(f"validate: ERROR {f}", file=sys.stderr)
    if errors or failures:
        return 1
    print(f"validate: every object valid (Kubernetes {KUBERNETES_VERSION}, strict)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
