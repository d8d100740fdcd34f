using Defeat.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip;

/// <summary>
/// Runs a frozen backbone in a lower precision (half on a GPU) while everything DEFEAT trains stays in float32:
/// inputs are cast to the backbone's type where they enter it, and every output (image features, token embeddings,
/// text features, the logit scale) is cast to float32 where it leaves it.
/// </summary>
/// <remarks>
/// DEFEAT concatenates the frozen token embeddings with its float32 context, feeds the grid features to the
/// float32 VQ-VAE and multiplies by the logit scale; the casts here keep those operations in one type. Gradients
/// (the attack's, and the prompt context's through the text encoder) flow through the casts. The wrapped backbone
/// is registered as the submodule <c>backbone</c>, so <c>DefeatModel</c> freezes it and <c>to(device)</c> moves it.
/// </remarks>
public sealed class PrecisionBackbone : nn.Module, IVisionLanguageBackbone
{
    private readonly nn.Module backbone;
    private readonly IVisionLanguageBackbone _inner;

    /// <summary>Converts <paramref name="inner"/>'s floating-point parameters and buffers to <paramref name="computeType"/> and wraps it.</summary>
    /// <param name="inner">A backbone that is a TorchSharp module (e.g. <c>ClipModel</c>).</param>
    /// <param name="computeType">The backbone's type: <c>Float16</c> (or <c>BFloat16</c>) on a GPU; any floating type works.</param>
    /// <exception cref="ArgumentException">The backbone is not a module, or the type is not floating point.</exception>
    public PrecisionBackbone(IVisionLanguageBackbone inner, ScalarType computeType) : base(nameof(PrecisionBackbone))
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (inner is not nn.Module module)
            throw new ArgumentException($"inner must be a TorchSharp module to change its precision; got {inner.GetType().Name}.", nameof(inner));
        if (!is_floating_point(computeType))
            throw new ArgumentException($"computeType must be a floating-point type such as Float16; got {computeType}.", nameof(computeType));
        backbone = module.to(computeType);
        _inner = inner;
        ComputeType = computeType;
        RegisterComponents();
    }

    /// <summary>The type the backbone computes in.</summary>
    public ScalarType ComputeType { get; }

    /// <inheritdoc/>
    public int FeatureDim => _inner.FeatureDim;

    /// <inheritdoc/>
    public int ImageSize => _inner.ImageSize;

    /// <inheritdoc/>
    public int InputChannels => _inner.InputChannels;

    /// <inheritdoc/>
    public (int Height, int Width) GridSize => _inner.GridSize;

    /// <inheritdoc/>
    public int EmbeddingDim => _inner.EmbeddingDim;

    /// <inheritdoc/>
    public int ContextLength => _inner.ContextLength;

    /// <inheritdoc/>
    public Tensor LogitScale => _inner.LogitScale.to(ScalarType.Float32);

    /// <inheritdoc/>
    public ImageFeatures EncodeImage(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var scope = NewDisposeScope();
        var features = _inner.EncodeImage(images.to(ComputeType));
        return new ImageFeatures(features.ClassFeature.to(ScalarType.Float32), features.GridFeatures.to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public Tensor Tokenize(IReadOnlyList<string> texts) => _inner.Tokenize(texts);

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => _inner.Encode(text);

    /// <inheritdoc/>
    public Tensor EmbedTokens(Tensor tokenIds)
    {
        using var scope = NewDisposeScope();
        return _inner.EmbedTokens(tokenIds).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public Tensor EncodeText(Tensor tokenIds)
    {
        using var scope = NewDisposeScope();
        return _inner.EncodeText(tokenIds).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public Tensor EncodeEmbeddings(Tensor promptEmbeddings, Tensor tokenIds)
    {
        ArgumentNullException.ThrowIfNull(promptEmbeddings);
        using var scope = NewDisposeScope();
        return _inner.EncodeEmbeddings(promptEmbeddings.to(ComputeType), tokenIds).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
