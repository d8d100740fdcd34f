"""Writes apgd_parity.json: runs of fra31/auto-attack's APGD-CE (autopgd_base.APGDAttack.attack_single_run) on a
small random float64 MLP, started from the clean images (x_init = x, so no random numbers are drawn), for
ApgdParityTests. The reference is imported from a fetched copy; nothing of it is copied into this repository.

Usage: /usr/bin/python3 make_apgd_fixtures.py [/path/to/fra31+auto-attack checkout (holds autoattack/)]
"""
import json
import os
import sys

import torch

REF = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOATTACK_REF", "/tmp/aa/ref")
sys.path.insert(0, REF)
from autoattack.autopgd_base import APGDAttack  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))
INPUTS, HIDDEN, CLASSES, B = 16, 12, 5, 6


def main():
    # The reference builds its step sizes and loss history with torch.ones/zeros, i.e. in the default dtype; float64
    # keeps the whole run in float64 (in float32 the rounded step 2 eps moved one case's result by 1.8e-6).
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(20200301)
    w1 = torch.randn(HIDDEN, INPUTS, dtype=torch.float64) * 0.8
    b1 = torch.randn(HIDDEN, dtype=torch.float64) * 0.1
    w2 = torch.randn(CLASSES, HIDDEN, dtype=torch.float64) * 0.8
    b2 = torch.randn(CLASSES, dtype=torch.float64) * 0.1

    def model(x):
        return torch.tanh(x.flatten(1) @ w1.T + b1) @ w2.T + b2

    x = 0.2 + 0.6 * torch.rand(B, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)

    cases = []
    for norm, eps, iterations in [("Linf", 0.02, 20), ("Linf", 0.04, 40), ("L2", 0.06, 20), ("L2", 0.15, 40)]:
        attack = APGDAttack(model, n_iter=iterations, norm=norm, n_restarts=1, eps=eps, seed=0, loss="ce", rho=0.75)
        attack.init_hyperparam(x)
        x_best, acc, loss_best, x_best_adv = attack.attack_single_run(x, y, x_init=x.clone())
        fooled = (acc == 0)
        # What an attack returns per image: the adversarial iterate where one was found, else the best-loss iterate.
        result = torch.where(fooled.view(-1, 1, 1, 1), x_best_adv, x_best)
        cases.append({
            "norm": norm, "epsilon": eps, "iterations": iterations,
            "fooled": fooled.tolist(), "best_loss": loss_best.tolist(),
            "result": result.flatten().tolist(), "best": x_best.flatten().tolist(),
        })

    data = {
        "source": "fra31/auto-attack autoattack/autopgd_base.py APGDAttack.attack_single_run, loss 'ce', x_init = x",
        "torch": torch.__version__,
        "w1": w1.flatten().tolist(), "b1": b1.tolist(), "w2": w2.flatten().tolist(), "b2": b2.tolist(),
        "inputs": INPUTS, "hidden": HIDDEN, "classes": CLASSES,
        "x": x.flatten().tolist(), "shape": list(x.shape), "y": y.tolist(),
        "cases": cases,
    }
    path = os.path.join(OUT, "apgd_parity.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    print(f"wrote {path}: {[sum(c['fooled']) for c in cases]} images fooled per case")


if __name__ == "__main__":
    main()
