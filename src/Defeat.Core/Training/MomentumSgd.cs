using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Training;

/// <summary>
/// Stochastic gradient descent with momentum and weight decay: PyTorch's <c>torch.optim.SGD</c> update without
/// dampening or Nesterov momentum, op for op, so it gives TorchSharp's <c>optim.SGD</c> results bit for bit.
/// </summary>
/// <remarks>
/// Written here rather than taken from TorchSharp because TorchSharp 0.107's step hands libtorch temporary Scalars
/// (<c>buf.mul_(momentum)</c>, <c>param.add_(grad, alpha: -lr)</c>) that a collection on another thread can finalize
/// mid-call (<see cref="ScalarOps"/>); this step holds each of its Scalars until libtorch returns. The update of a
/// parameter p with gradient g: g += wd p; b = g on the first step, else b = m b + g; p -= lr b.
/// </remarks>
public sealed class MomentumSgd : IDisposable
{
    private readonly Parameter[] _parameters;
    private readonly Tensor?[] _buffers;
    private readonly double _momentum;
    private readonly double _weightDecay;

    /// <summary>An optimizer over <paramref name="parameters"/>.</summary>
    /// <param name="parameters">The parameters to update; at least one.</param>
    /// <param name="learningRate">The step size, finite and non-negative; <see cref="LearningRate"/> changes it later.</param>
    /// <param name="momentum">The momentum factor, in [0, 1); 0 is plain SGD.</param>
    /// <param name="weightDecay">The L2 penalty added to each gradient, non-negative.</param>
    public MomentumSgd(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0.9, double weightDecay = 0)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToArray();
        if (_parameters.Length == 0)
            throw new ArgumentException("Expected at least one parameter; got none.", nameof(parameters));
        if (!(momentum >= 0 && momentum < 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "Expected a momentum in [0, 1).");
        if (!(weightDecay >= 0 && double.IsFinite(weightDecay)))
            throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "Expected a finite, non-negative weight decay.");
        _buffers = new Tensor?[_parameters.Length];
        LearningRate = learningRate;
        _momentum = momentum;
        _weightDecay = weightDecay;
    }

    /// <summary>The step size of the next <see cref="Step"/>: finite and non-negative (a cosine schedule may end at 0).</summary>
    public double LearningRate
    {
        get => _learningRate;
        set => _learningRate = value >= 0 && double.IsFinite(value) ? value
            : throw new ArgumentOutOfRangeException(nameof(value), value, "Expected a finite, non-negative learning rate.");
    }

    private double _learningRate;

    /// <summary>Zeroes every gradient (kept allocated, as TorchSharp's <c>zero_grad</c> does).</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
        {
            using var grad = p.grad;
            grad?.zero_();
        }
    }

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public void Step()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var weightDecay = _weightDecay.ToScalar();
        using var momentum = _momentum.ToScalar();
        using var one = 1.0.ToScalar();
        using var minusLr = (-LearningRate).ToScalar();
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            var grad = p.grad;
            if (grad is null) continue;
            if (_weightDecay != 0) grad = grad.add(p, weightDecay);
            if (_momentum != 0)
            {
                if (_buffers[i] is { } buffer)
                    buffer.mul_(momentum).add_(grad, one);
                else
                    _buffers[i] = grad.clone().detach().DetachFromDisposeScope();
                grad = _buffers[i]!;
            }
            p.add_(grad, minusLr);
        }
    }

    /// <summary>The momentum buffers that exist, by parameter index (for a checkpoint).</summary>
    public IEnumerable<(int Index, Tensor Buffer)> Buffers() =>
        _buffers.Select((b, i) => (i, b)).Where(t => t.b is not null).Select(t => (t.i, t.b!));

    /// <summary>Restores the momentum buffer of parameter <paramref name="index"/> from a copy.</summary>
    public void LoadBuffer(int index, Tensor buffer)
    {
        if (index < 0 || index >= _parameters.Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"Expected a parameter index in [0, {_parameters.Length}).");
        var p = _parameters[index];
        if (!buffer.shape.SequenceEqual(p.shape))
            throw new ArgumentException($"Momentum buffer {index} has shape [{string.Join(", ", buffer.shape)}]; its parameter has [{string.Join(", ", p.shape)}].", nameof(buffer));
        _buffers[index]?.Dispose();
        _buffers[index] = buffer.to(p.dtype, p.device).clone().DetachFromDisposeScope();
    }

    /// <summary>Frees the momentum buffers.</summary>
    public void Dispose()
    {
        foreach (var b in _buffers) b?.Dispose();
        Array.Clear(_buffers);
    }
}
