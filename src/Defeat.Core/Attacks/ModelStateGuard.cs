using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Attacks;

/// <summary>
/// Snapshots a module's train/eval flags and its parameters' <c>requires_grad</c> flags, freezes
/// the parameters (and optionally switches to eval mode) for the duration of an attack, and
/// restores every flag on <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// Freezing the parameters during an attack keeps autograd from saving what it would need for
/// parameter gradients; eval mode keeps modules with training-time side effects (an EMA codebook,
/// batch-norm statistics, dropout) from changing or randomising the model while it is attacked.
/// Flags are restored module by module, parents first, so a frozen backbone kept in eval mode
/// inside a model in training mode comes back exactly as it was.
/// </remarks>
public sealed class ModelStateGuard : IDisposable
{
    private readonly List<(nn.Module Module, bool Training)> _modes = new();
    private readonly List<(Parameter Parameter, bool RequiresGrad)> _flags = new();
    private bool _disposed;

    /// <summary>Takes the snapshot, then freezes the parameters and, if asked, sets eval mode.</summary>
    /// <param name="model">The module to protect.</param>
    /// <param name="evalMode">Whether to switch the module to eval mode until disposal.</param>
    public ModelStateGuard(nn.Module model, bool evalMode)
    {
        ArgumentNullException.ThrowIfNull(model);
        _modes.Add((model, model.training));
        foreach (var m in model.modules()) _modes.Add((m, m.training));
        foreach (var p in model.parameters()) _flags.Add((p, p.requires_grad));

        foreach (var (p, _) in _flags) p.requires_grad = false;
        if (evalMode) model.eval();
    }

    /// <summary>Restores every module's train/eval flag and every parameter's <c>requires_grad</c>.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // train(bool) recurses into children, so parents go first and descendants then fix their own flag.
        foreach (var (m, training) in _modes) m.train(training);
        foreach (var (p, requiresGrad) in _flags) p.requires_grad = requiresGrad;
    }
}
