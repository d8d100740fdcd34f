namespace Defeat.Clip.Loading;

/// <summary>
/// The kinds of checkpoint file <see cref="ClipLoader"/> reads, told apart by their content. Two are data
/// (<see cref="PyTorchPickle"/>, <see cref="Safetensors"/>); <see cref="TorchScript"/> is code.
/// </summary>
public enum CheckpointFormat
{
    /// <summary>
    /// A TorchScript archive (<c>torch.jit.save</c>): OpenAI's released <c>ViT-B-32.pt</c> and friends. A program:
    /// loading it runs the code it carries, so it is read only with <see cref="ClipLoadOptions.AllowTorchScript"/>.
    /// </summary>
    TorchScript,

    /// <summary>
    /// A zip file written by <c>torch.save</c> holding a state dict (or a dict of state dicts, as TeCoA's). Data: its
    /// pickle is read by TorchSharp.PyBridge's unpickler, which maps class names to .NET constructors and runs no Python.
    /// </summary>
    PyTorchPickle,

    /// <summary>A safetensors file (Hugging Face's <c>model.safetensors</c>, or one saved by <see cref="ClipLoader.Save"/>). Data: a JSON header and raw bytes.</summary>
    Safetensors,
}
