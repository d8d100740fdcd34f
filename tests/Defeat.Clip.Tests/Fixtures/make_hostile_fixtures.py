"""Writes the hostile checkpoint fixtures of HostileCheckpointTests (issue 11, items 2 and 3).

Run under Debian's PyTorch 1.13 (apt-get install python3-torch):

    /usr/bin/python3 tests/Defeat.Clip.Tests/Fixtures/make_hostile_fixtures.py [out_dir]

Outputs (all small):
  hostile_torchscript_setstate.pt  a TorchScript module whose __setstate__ (run by torch.jit.load) overwrites the
                                   first 8 bytes of ./defeat_torchscript_canary.bin (relative to the current
                                   directory) with 'X' through a shared memory map (torch.from_file)
  hostile_cyclic_dict.pt           torch.save of a dict that contains itself
  hostile_shared_dicts.pt          torch.save of 64 levels of dicts, each holding the next one twice (2**64 paths)
  hostile_deep_dict.pt             a torch.save-style zip whose data.pkl nests empty dicts 300,000 deep (written by
                                   hand: Python's pickler recurses and cannot write it)
  hostile_pickle_bomb.pt           a torch.save-style zip whose data.pkl pushes 5,000,000 empty dicts (about 5 MB of
                                   pickle, deflated to a few kilobytes)
  hostile_shape_beyond_storage.pt  torch.save of a tensor record whose shape (20000 x 20000 float32, 1.6 GB) is far
                                   larger than its storage (one float)
  tiny_torchscript-state-dict.pt   tiny_torchscript.pt (from make_fixtures.py) converted by the Python line that
                                   ClipLoader's refusal of a TorchScript archive prints, run here as printed
"""
import collections
import io
import os
import subprocess
import sys
import zipfile
from typing import Tuple

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


class WritesOnLoad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        # torch.jit.load calls this. A shared map writes through to the file; the result is used so that the
        # TorchScript compiler keeps the write.
        canary = torch.from_file("defeat_torchscript_canary.bin", shared=True, size=8, dtype=torch.uint8)
        written = canary.fill_(88)
        self.weight = state[0] + 0.0 * written[0]
        self.training = state[1]


torch.jit.script(WritesOnLoad()).save(os.path.join(OUT, "hostile_torchscript_setstate.pt"))

cyclic = {}
cyclic["self"] = cyclic
torch.save(cyclic, os.path.join(OUT, "hostile_cyclic_dict.pt"))

shared = {}
for _ in range(64):
    shared = {"a": shared, "b": shared}
torch.save(shared, os.path.join(OUT, "hostile_shared_dicts.pt"))


def write_torch_zip(name, pickle_bytes):
    # The layout torch.save uses (archive/data.pkl, archive/version), deflated to keep the fixture small.
    with zipfile.ZipFile(os.path.join(OUT, name), "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")


DEPTH = 300_000
deep = io.BytesIO()
deep.write(b"\x80\x02")                       # PROTO 2
for _ in range(DEPTH):
    deep.write(b"}")                          # EMPTY_DICT (the parent)
    deep.write(b"X\x01\x00\x00\x00a")         # BINUNICODE 'a' (its key)
deep.write(b"}")                              # the innermost dict
deep.write(b"s" * DEPTH)                      # SETITEM: parent['a'] = child, innermost first
deep.write(b".")                              # STOP
write_torch_zip("hostile_deep_dict.pt", deep.getvalue())

# Check the hand-written pickle with Python's own unpickler (iterative on the opcode stream).
import pickle
value = pickle.loads(deep.getvalue())
levels = 0
while value:
    value = value["a"]
    levels += 1
assert levels == DEPTH, levels

COUNT = 5_000_000
write_torch_zip("hostile_pickle_bomb.pt", b"\x80\x02" + b"}" * COUNT + b"0" * (COUNT - 1) + b".")

class ShapeBeyondStorage:
    # Pickles as the tensor record torch.save writes, but with a shape its one-element storage cannot hold.
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (torch.zeros(1).storage(), 0, (20000, 20000), (20000, 1), False, collections.OrderedDict()))


torch.save({"w": ShapeBeyondStorage()}, os.path.join(OUT, "hostile_shape_beyond_storage.pt"))

# The conversion line of ClipLoader's TorchScript refusal, for the fixture next to this script.
subprocess.run([sys.executable, "-c", "import torch; torch.save(torch.jit.load('tiny_torchscript.pt', map_location='cpu')"
                ".state_dict(), 'tiny_torchscript-state-dict.pt')"], cwd=OUT, check=True)

for name in ["tiny_torchscript-state-dict.pt", "hostile_shape_beyond_storage.pt", "hostile_torchscript_setstate.pt", "hostile_cyclic_dict.pt", "hostile_shared_dicts.pt",
             "hostile_deep_dict.pt", "hostile_pickle_bomb.pt"]:
    print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")
