"""Measures the sizes the loader's limits are set against: for OpenAI's ViT-B/32 and ViT-L/14 (random weights, the
reference architecture), the number of tensors, the size of a torch.save state dict's data.pkl, the values its
pickle pushes (what ClipLoadOptions.MaxPickleObjects counts), and the length of a safetensors header as
SafetensorsFile.Write forms it. Writes no file.

    /usr/bin/python3 tests/Defeat.Clip.Tests/Fixtures/measure_real_sizes.py /path/to/openai-CLIP

Each tensor is saved as a zero-stride view of one element so nothing large is written; a real file's pickle has the
same opcodes, with slightly longer numbers (strides and storage sizes), so its size is a little larger.
"""
import importlib.util
import io
import json
import os
import pickletools
import sys
import zipfile

import torch

REF = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CLIP_REF", "/work/ref/openai+CLIP")
spec = importlib.util.spec_from_file_location("clip_model", os.path.join(REF, "clip", "model.py"))
ref_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref_model)

# Opcodes that push nothing (the complement is what the loader's PickleGuard counts).
NO_PUSH = {"MARK", "POP", "POP_MARK", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "PROTO", "FRAME", "APPEND", "APPENDS",
           "SETITEM", "SETITEMS", "ADDITEMS", "BUILD", "READONLY_BUFFER", "STOP"}
# embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, context_length, vocab_size,
# transformer_width, transformer_heads, transformer_layers (as clip/model.py's build_model infers them)
CONFIGS = {"ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
           "ViT-L/14": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12)}

for name, config in CONFIGS.items():
    state = ref_model.CLIP(*config).state_dict()
    light = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) if v.dim() else v.clone() for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(light, buffer)
    archive = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    pickle = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    pushes = sum(1 for op, _, _ in pickletools.genops(pickle) if op.name not in NO_PUSH)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key in sorted(state):
        size = state[key].numel() * state[key].element_size()
        header[key] = {"dtype": "F32", "shape": list(state[key].shape), "data_offsets": [offset, offset + size]}
        offset += size
    print(f"{name}: {len(state)} tensors, data.pkl {len(pickle)} bytes, {pushes} values pushed, "
          f"safetensors header {len(json.dumps(header, separators=(',', ':')))} bytes")
