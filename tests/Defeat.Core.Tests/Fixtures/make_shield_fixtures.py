"""Writes shield_parity.json + shield_parity.bin: a small random official DEFEAT shield
(VQVAE_NET + LinearProjection from cheny02/DEFEAT-ICLR2026 trainers/defeat.py), its inputs, outputs,
losses and a few gradients, in float64, for PerturbShieldParityTests.

Usage: /usr/bin/python3 make_shield_fixtures.py [/work/ref/cheny02+DEFEAT-ICLR2026]

defeat.py imports dassl, torchattacks, ... at module level, so the script does not import it: it
parses the file and executes only the three class definitions it needs (nothing of them is copied
into this repository). VQVAE_NET.forward reshapes with the literal width 512 (ViT-B/32); the
script substitutes the input's own width so that a small D can be used; nothing else is changed.
"""
import ast
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

REF = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DEFEAT_REF", "/work/ref/cheny02+DEFEAT-ICLR2026")
OUT = os.path.dirname(os.path.abspath(__file__))

D, H, K, B, SIDE = 32, 16, 32, 2, 7
N = SIDE * SIDE


def load_reference_classes():
    path = os.path.join(REF, "trainers", "defeat.py")
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    wanted = {"ResidualBlock", "VQVAE_NET", "LinearProjection"}
    nodes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in wanted]
    assert {n.name for n in nodes} == wanted, f"missing classes in {path}"
    source = "\n\n".join(ast.get_source_segment(open(path).read(), n) for n in nodes)
    assert source.count("x.view(-1, 512, 7, 7)") == 1, "the reference reshape changed; update this script"
    source = source.replace("x.view(-1, 512, 7, 7)", "x.view(-1, x.shape[1], 7, 7)")
    namespace = {"torch": torch, "nn": nn, "F": F}
    exec(compile(source, path, "exec"), namespace)
    return namespace["VQVAE_NET"], namespace["LinearProjection"]


def main():
    VQVAE_NET, LinearProjection = load_reference_classes()
    torch.manual_seed(20260127)
    vqvae = VQVAE_NET(D, H, K).double()
    projection = LinearProjection(N).double()
    with torch.no_grad():
        # A wider codebook than the official U(-1/K, 1/K) so that many codes are chosen.
        vqvae.vq_embedding.weight.normal_(0.0, 0.5)

    grid = torch.randn(B, N, D, dtype=torch.float64)
    class_feature = torch.randn(B, D, dtype=torch.float64)

    # The official CustomCLIP.forward / DEFEAT.forward_backward computation, step by step.
    x_hat, ze, zq = vqvae(grid)
    recon = x_hat.view(B, D, -1).permute(0, 2, 1)
    projected = projection(recon)
    x = grid.permute(0, 2, 1).reshape(x_hat.shape)
    l_rec = F.mse_loss(x, x_hat)
    l_emb = F.mse_loss(ze.detach(), zq)
    l_com = F.mse_loss(ze, zq.detach())
    total = 0.5 * l_rec + 0.1 * l_emb + 0.025 * l_com
    image_n = class_feature / class_feature.norm(dim=-1, keepdim=True)
    proj_n = projected / projected.norm(dim=-1, keepdim=True)
    alignment = F.l1_loss(image_n, proj_n)

    # Recompute the indices the same way the reference does (argmin of squared distances).
    with torch.no_grad():
        e = vqvae.vq_embedding.weight
        dist = ((ze.permute(0, 2, 3, 1).reshape(-1, H)[:, None, :] - e[None]) ** 2).sum(-1)
        indices = dist.argmin(1).reshape(B, N)

    objective = total + 10.0 * alignment
    objective.backward()

    tensors = {}
    for k, v in vqvae.state_dict().items():
        tensors["vqvae." + k] = v
    for k, v in projection.state_dict().items():
        tensors["cls_projection." + k] = v
    tensors.update({
        "input.grid": grid,
        "input.class_feature": class_feature,
        "output.reconstruction": recon.detach(),
        "output.projected": projected.detach(),
        "output.indices": indices.double(),
        "output.reconstruction_loss": l_rec.detach().reshape(1),
        "output.codebook_loss": l_emb.detach().reshape(1),
        "output.commitment_loss": l_com.detach().reshape(1),
        "output.loss": total.detach().reshape(1),
        "output.alignment_loss": alignment.detach().reshape(1),
        "grad.vqvae.encoder.0.weight": vqvae.encoder[0].weight.grad,
        "grad.vqvae.vq_embedding.weight": vqvae.vq_embedding.weight.grad,
        "grad.vqvae.decoder.2.weight": vqvae.decoder[2].weight.grad,
        "grad.cls_projection.linear.weight": projection.linear.weight.grad,
    })

    manifest, offset = {}, 0
    with open(os.path.join(OUT, "shield_parity.bin"), "wb") as f:
        for name, t in tensors.items():
            data = t.detach().double().contiguous().numpy().tobytes()
            manifest[name] = {"shape": list(t.shape), "offset": offset}
            f.write(data)
            offset += len(data)
    with open(os.path.join(OUT, "shield_parity.json"), "w") as f:
        json.dump({"dtype": "float64-le", "dims": {"D": D, "H": H, "K": K, "B": B, "N": N}, "tensors": manifest}, f, indent=1)
    print(f"wrote {len(tensors)} tensors, {offset} bytes; distinct codes used: {indices.unique().numel()}")


if __name__ == "__main__":
    main()
