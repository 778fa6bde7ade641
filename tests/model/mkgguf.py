"""GGUF files of the shared models, made by qpipe itself (quantize then
export.gguf), for the model tests."""
import json
import os
import subprocess

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [{types}] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
"""


def exported(qpipe, workdir, model_dir, types):
    """{type: path of the exported GGUF} for model_dir."""
    name = os.path.basename(model_dir.rstrip("/"))
    recipe = os.path.join(workdir, "r-%s.yaml" % name)
    log = os.path.join(workdir, "log-%s.jsonl" % name)
    with open(recipe, "w") as f:
        f.write(RECIPE.format(model=model_dir, types=", ".join(types)))
    p = subprocess.run([qpipe, "run", recipe, "--cache-dir", os.path.join(workdir, "cache"),
                        "--log-json", log], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("qpipe run failed:\n" + p.stderr)
    out = {}
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "stage" and e["stage"].startswith("gguf["):
                out[e["stage"][len("gguf[type="):-1]] = e["outputs"]["model.gguf"]
    return out
