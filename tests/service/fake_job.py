"""Stand-in for robustlit-train in the service tests: reads Hydra-style overrides and writes a valid report.

``+sleep=S`` sleeps first, ``+fail=1`` exits with status 3; ``seed=N`` sets clean accuracy to 0.5 + N/100.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def main(argv: list[str]) -> int:
    options = dict(arg.lstrip("+").split("=", 1) for arg in argv if "=" in arg)
    out = Path(options["hydra.run.dir"].strip("'"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"fake job starting with {' '.join(argv)}", flush=True)
    time.sleep(float(options.get("sleep", 0)))
    if options.get("fail"):
        print("fake-job: error: asked to fail", file=sys.stderr, flush=True)
        return 3
    from robustlit.reporting import Report, write_report

    seed = int(options.get("seed", 0))
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "curve.png").write_bytes(PNG)
    report = Report.from_dict({
        "schema_version": 1,
        "run": {"id": "fake", "name": "fake", "type": "train", "seed": seed, "started_at": "2026-01-01T00:00:00Z",
                "finished_at": "2026-01-01T00:00:01Z", "config": {"argv": argv}, "git_sha": None,
                "robustlit_version": "0.1.0"},
        "model": {"name": "fake", "params": 1, "checkpoint": None},
        "data": {"name": "digits", "n_test": 100, "fingerprint": "00"},
        "metrics": [
            {"suite": "clean", "name": "accuracy", "value": round(0.5 + seed / 100, 4), "context": {}},
            {"suite": "adversarial", "name": "robust_accuracy", "value": 0.25,
             "context": {"attack": "pgd", "norm": "Linf", "eps": 0.0313725}},
        ],
        "artifacts": [
            {"name": "curve.png", "type": "plot", "uri": str(out / "plots" / "curve.png")},
            {"name": "elsewhere.ckpt", "type": "checkpoint", "uri": "/nonexistent/elsewhere.ckpt"},
        ],
    })
    write_report(report, out)
    print("fake job done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
