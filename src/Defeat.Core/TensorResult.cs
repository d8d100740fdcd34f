using static TorchSharp.torch;

namespace Defeat;

/// <summary>
/// The one mechanism behind every result record that carries tensors (<see cref="Quantization.QuantizerOutput"/>,
/// <see cref="Shield.ShieldOutput"/>, <see cref="Backbones.ImageFeatures"/>, the model's output): a result is
/// disposed as a whole and moved out of a dispose scope as a whole.
/// </summary>
/// <remarks>
/// One tensor may fill several fields of a result (the clean and the fused logits of a model without the shield, or
/// the zero that stands for every loss term a configuration lacks): <see cref="Tensors"/>, <see cref="Dispose"/> and
/// <see cref="TensorResultExtensions.MoveToOuterDisposeScope{T}"/> act once per distinct tensor. Dispose the result,
/// not its fields one by one.
/// </remarks>
public abstract record TensorResult : IDisposable
{
    /// <summary>The tensor of every field, in declaration order; null for an absent optional field.</summary>
    protected abstract IEnumerable<Tensor?> Fields();

    /// <summary>Each distinct tensor of this result, once (by reference), in field order.</summary>
    public IReadOnlyList<Tensor> Tensors()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        return Fields().OfType<Tensor>().Where(seen.Add).ToList();
    }

    /// <summary>Disposes every tensor of the result, each once.</summary>
    public void Dispose()
    {
        foreach (var tensor in Tensors()) tensor.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Dispose-scope operations on a <see cref="TensorResult"/>.</summary>
public static class TensorResultExtensions
{
    /// <summary>
    /// Moves every distinct tensor of <paramref name="result"/> to the dispose scope outside the current one (as
    /// <c>Tensor.MoveToOuterDisposeScope</c> does for one tensor), so that a module can compute inside its own scope
    /// and hand back the whole result: <c>return new ShieldOutput(...).MoveToOuterDisposeScope();</c>.
    /// </summary>
    /// <typeparam name="T">The result's type.</typeparam>
    /// <param name="result">The result to move.</param>
    /// <returns><paramref name="result"/>.</returns>
    public static T MoveToOuterDisposeScope<T>(this T result) where T : TensorResult
    {
        ArgumentNullException.ThrowIfNull(result);
        foreach (var tensor in result.Tensors()) tensor.MoveToOuterDisposeScope();
        return result;
    }
}
