#!/usr/bin/env python3
"""Checks the Helm chart with Helm's own engine (helm-python-sdk), no helm binary needed.

  chart.py check           lint (strict) and render the chart for the default and the
                           production-like values, then validate every rendered manifest
                           with kubernetes-validate --strict
  chart.py render NAME     print the rendered objects for values NAME (default|production)
                           as one JSON list, for the tests

Needs helm-python-sdk, kubernetes-validate and PyYAML on PYTHONPATH (.ci/run puts them in
.tools/pip).
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "creditpool"
VALUES = {
    "default": None,
    "production": ROOT / "helm" / "ci" / "production-values.yaml",
}
# Kinds that come from CRDs the validator has no schema for; checked by Helm lint and the
# values schema only.
CUSTOM_KINDS = {"ServiceMonitor"}


def values(name):
    path = VALUES[name]
    return yaml.safe_load(path.read_text()) if path else None


def render(name):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values(name))
        manifests = chart.render(values(name), name="creditpool", namespace="credits", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append(document)
    return objects


def lint(name):
    report = helm.lint(str(CHART), values(name), strict=True)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += report.get("errors") or []
    for problem in problems:
        print(f"helm lint ({name}): {problem}", file=sys.stderr)
    return not problems


def check():
    ok = True
    with tempfile.TemporaryDirectory() as directory:
        for name in VALUES:
            ok = lint(name) and ok
            objects = render(name)
            files = []
            for index, document in enumerate(objects):
                if document["kind"] in CUSTOM_KINDS:
                    continue
                path = pathlib.Path(directory) / f"{name}-{index:02d}-{document['kind']}.yaml"
                path.write_text(yaml.safe_dump(document))
                files.append(str(path))
            kinds = sorted(o["kind"] for o in objects)
            print(f"{name}: rendered {len(objects)} objects: {', '.join(kinds)}")
            result = subprocess.run(
                [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *files],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                print(result.stdout + result.stderr, file=sys.stderr)
                ok = False
    print("chart: lint and validation clean" if ok else "chart: problems found", file=sys.stderr)
    return ok


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "check":
        sys.exit(0 if check() else 1)
    if len(sys.argv) == 3 and sys.argv[1] == "render" and sys.argv[2] in VALUES:
        print(json.dumps(render(sys.argv[2])))
        return
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
