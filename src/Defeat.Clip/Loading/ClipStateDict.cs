using Defeat.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Loading;

/// <summary>
/// Works on CLIP state dicts in OpenAI's layout: infers the model's sizes from tensor shapes (as the reference
/// <c>build_model</c> does) and copies tensors into a model after checking every key and shape.
/// </summary>
public static class ClipStateDict
{
    /// <summary>Keys some OpenAI archives carry as plain attributes; they are not weights.</summary>
    public static readonly IReadOnlyList<string> IgnoredKeys = ["input_resolution", "context_length", "vocab_size"];

    /// <summary>
    /// Infers a <see cref="ClipConfig"/> from an OpenAI-layout state dict: widths from the layer norms and the patch
    /// convolution, layer counts from the block keys, resolution from the positional embedding, heads as
    /// <c>width / 64</c> unless given.
    /// </summary>
    /// <param name="stateDict">Tensors by OpenAI key.</param>
    /// <param name="visionHeads">Image-transformer heads when they are not <c>width / 64</c> (only custom models).</param>
    /// <param name="textHeads">Text-transformer heads when they are not <c>width / 64</c>.</param>
    /// <param name="path">The file, for error messages.</param>
    /// <exception cref="ClipCheckpointException">The weights are a ResNet CLIP, or keys needed to infer sizes are missing.</exception>
    public static ClipConfig InferConfig(IReadOnlyDictionary<string, Tensor> stateDict, int? visionHeads = null, int? textHeads = null, string? path = null)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        if (!stateDict.ContainsKey("visual.proj") && stateDict.Keys.Any(k => k.StartsWith("visual.layer1.", StringComparison.Ordinal) || k.StartsWith("visual.attnpool.", StringComparison.Ordinal)))
            throw new ClipCheckpointException(
                "These are the weights of a ResNet CLIP (RN50, RN101, RN50x4, ...); Defeat.Clip supports the Vision Transformer models (ViT-B/32, ViT-B/16, ViT-L/14, ...) only.", path);
        string[] needed = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "text_projection",
            "positional_embedding", "token_embedding.weight", "ln_final.weight"];
        var missing = needed.Where(k => !stateDict.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new ClipCheckpointException("The checkpoint lacks the tensors that give a CLIP model's sizes.", path,
                missing.Select(k => $"missing '{k}'").ToList());

        var conv = stateDict["visual.conv1.weight"].shape;
        int visionWidth = (int)conv[0];
        int patch = (int)conv[^1];
        int grid = (int)Math.Round(Math.Sqrt(stateDict["visual.positional_embedding"].shape[0] - 1));
        int textWidth = (int)stateDict["ln_final.weight"].shape[0];
        return new ClipConfig
        {
            EmbedDim = (int)stateDict["text_projection"].shape[1],
            ImageResolution = patch * grid,
            VisionLayers = CountBlocks(stateDict, "visual.transformer.resblocks."),
            VisionWidth = visionWidth,
            VisionPatchSize = patch,
            VisionHeads = visionHeads,
            InputChannels = (int)conv[1],
            ImageMean = conv[1] == 1 ? [ClipConfig.ClipGreyMean] : conv[1] == 3 ? ClipConfig.ClipRgbMean : Enumerable.Repeat(0.5, (int)conv[1]).ToArray(),
            ImageStd = conv[1] == 1 ? [ClipConfig.ClipGreyStd] : conv[1] == 3 ? ClipConfig.ClipRgbStd : Enumerable.Repeat(0.5, (int)conv[1]).ToArray(),
            ContextLength = (int)stateDict["positional_embedding"].shape[0],
            VocabSize = (int)stateDict["token_embedding.weight"].shape[0],
            TextWidth = textWidth,
            TextHeads = textHeads,
            TextLayers = CountBlocks(stateDict, "transformer.resblocks."),
        };
    }

    private static int CountBlocks(IReadOnlyDictionary<string, Tensor> stateDict, string prefix) =>
        stateDict.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal))
            .Select(k => k[prefix.Length..].Split('.')[0]).Distinct().Count();

    /// <summary>
    /// Copies tensors into a module's parameters (converted to each parameter's dtype and device) after checking
    /// that the keys match exactly and every shape fits; otherwise throws one error listing every missing,
    /// unexpected and mis-shaped key with its expected and found shape, and changes nothing.
    /// </summary>
    /// <param name="module">The model or submodule to fill.</param>
    /// <param name="stateDict">Tensors by key (relative to <paramref name="module"/>).</param>
    /// <param name="path">The file, for error messages.</param>
    /// <exception cref="ClipCheckpointException">Keys or shapes do not match.</exception>
    public static void LoadInto(nn.Module module, IReadOnlyDictionary<string, Tensor> stateDict, string? path = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(stateDict);
        var expected = module.state_dict();
        var problems = StateDictCopy.Mismatches(expected, stateDict, IgnoredKeys);
        if (problems.Count > 0)
            throw new ClipCheckpointException($"The checkpoint does not fit the model ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}).", path, problems);
        StateDictCopy.CopyInto(expected, stateDict, IgnoredKeys);
    }
}
