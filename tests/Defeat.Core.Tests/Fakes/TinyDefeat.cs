using Defeat.Data;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Shield;

namespace Defeat.Tests.Fakes;

/// <summary>The small DEFEAT model and data the reliability tests train and attack many times.</summary>
public static class TinyDefeat
{
    /// <summary>Four class names the fake backbone's vocabulary knows.</summary>
    public static readonly string[] Classes = { "cat", "dog", "red car", "bird" };

    /// <summary>DEFEAT on <see cref="FakeBackbone"/>: a 4-token context, a 4-wide VQ-VAE with 16 codes; the same weights every call.</summary>
    public static DefeatModel Model()
    {
        var backbone = new FakeBackbone(seed: 3);
        manual_seed(4);
        return DefeatModel.Create(backbone, Classes, promptOptions: new PromptLearnerOptions { ContextLength = 4, Seed = 1 },
            shieldOptions: new PerturbShieldOptions { HiddenDim = 4, CodebookSize = 16 });
    }

    /// <summary><paramref name="count"/> random 12x12 images with random labels, the same every call.</summary>
    public static LabeledImages Data(int count)
    {
        var g = new Generator(9);
        return new LabeledImages(rand([count, 3, 12, 12], generator: g), randint(0, Classes.Length, [count], generator: g), Classes);
    }
}
