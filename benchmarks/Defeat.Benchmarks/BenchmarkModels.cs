using Defeat.Clip;
using Defeat.Clip.Loading;
using TorchSharp;

namespace Defeat.Benchmarks;

/// <summary>The two image encoders of the step benchmarks.</summary>
public static class BenchmarkModels
{
    /// <summary>Name of the shipped Fashion-MNIST backbone (28x28 grey, patch 4, width 64, 3 layers).</summary>
    public const string Shipped = "fmnist";

    /// <summary>Name of the ViT-B/32-shaped CLIP with random weights (224 px, patch 32, width 768, 12 layers).</summary>
    public const string VitB32 = "vitb32";

    private const string ShippedPath = "samples/Defeat.Samples.FashionMnist/backbone/fashion-mnist-clip.safetensors";

    /// <summary>Loads or builds the model named <paramref name="name"/>, frozen (no parameter requires a gradient) and in eval mode.</summary>
    public static ClipModel Create(string name)
    {
        ClipModel model;
        if (name == Shipped)
            model = ClipLoader.Load(FindInRepository(ShippedPath));
        else if (name == VitB32)
        {
            model = new ClipModel(ClipConfig.ViTB32());
            model.InitializeParameters(seed: 1);
        }
        else throw new ArgumentException($"Unknown model \"{name}\"; expected \"{Shipped}\" or \"{VitB32}\".", nameof(name));
        var expected = Config(name);
        if (model.Config.VisionWidth != expected.VisionWidth || model.Config.VisionLayers != expected.VisionLayers
            || model.Config.TextWidth != expected.TextWidth || model.Config.TextLayers != expected.TextLayers
            || model.Config.EmbedDim != expected.EmbedDim || model.Config.ImageResolution != expected.ImageResolution
            || model.Config.VisionPatchSize != expected.VisionPatchSize || model.Config.InputChannels != expected.InputChannels)
            throw new InvalidOperationException($"{name}: the model's sizes differ from those the FLOP count assumes.");
        foreach (var p in model.parameters()) p.requires_grad = false;
        model.eval();
        return model;
    }

    /// <summary>The configuration of the model named <paramref name="name"/> without building it (for FLOP counts).</summary>
    public static ClipConfig Config(string name) => name switch
    {
        Shipped => ClipConfig.Tiny(width: 64, layers: 3, heads: 2, embedDim: 64),
        VitB32 => ClipConfig.ViTB32(),
        _ => throw new ArgumentException($"Unknown model \"{name}\".", nameof(name)),
    };

    /// <summary>Walks up from the working directory and the binary's folder to the repository file <paramref name="relative"/>.</summary>
    public static string FindInRepository(string relative)
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relative);
                if (File.Exists(candidate)) return candidate;
            }
        throw new FileNotFoundException($"Could not find {relative} above {Environment.CurrentDirectory} or {AppContext.BaseDirectory}.");
    }

    /// <summary>Uniform pixels in [0, 1] for <paramref name="batch"/> images of the model, from a seeded generator.</summary>
    public static torch.Tensor Images(ClipModel model, int batch, ulong seed = 7)
    {
        using var generator = new torch.Generator(seed);
        return torch.rand(new long[] { batch, model.InputChannels, model.ImageSize, model.ImageSize }, generator: generator);
    }
}
