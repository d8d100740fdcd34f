using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace Defeat.Checkpoints;

/// <summary>One loaded checkpoint: the saved tensors and the metadata written beside them.</summary>
/// <param name="Epoch">The epoch the checkpoint was written after (1-based).</param>
/// <param name="Tensors">Tensors by name, on the CPU; the caller owns them.</param>
/// <param name="Metadata">The caller's metadata (options, class names, seed, metrics...).</param>
/// <param name="TensorsPath">The <c>.safetensors</c> file the tensors came from.</param>
public sealed record Checkpoint(int Epoch, Dictionary<string, Tensor> Tensors, JsonObject Metadata, string TensorsPath) : IDisposable
{
    /// <summary>Disposes the tensors.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}
