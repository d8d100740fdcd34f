using Defeat.Backbones;
using Defeat.Clip;
using Defeat.Clip.Loading;

namespace Defeat.Tests.Clip;

/// <summary>Configuration, input checks and properties of <see cref="ClipModel"/> beyond reference parity.</summary>
public class ClipModelTests
{
    [Test]
    public void FactoriesGiveTheReleasedSizes()
    {
        var b32 = ClipConfig.ViTB32();
        Assert.That((b32.EmbedDim, b32.VisionWidth, b32.VisionLayers, b32.VisionPatchSize, b32.GridSide, b32.ResolvedVisionHeads, b32.ResolvedTextHeads),
            Is.EqualTo((512, 768, 12, 32, 7, 12, 8)));
        Assert.That(ClipConfig.ViTB16().GridSide, Is.EqualTo(14));
        var l14 = ClipConfig.ViTL14();
        Assert.That((l14.EmbedDim, l14.VisionWidth, l14.VisionLayers, l14.GridSide, l14.ResolvedVisionHeads, l14.ResolvedTextHeads),
            Is.EqualTo((768, 1024, 24, 16, 16, 12)));
        var tiny = ClipConfig.Tiny();
        Assert.That((tiny.ImageResolution, tiny.VisionPatchSize, tiny.GridSide, tiny.InputChannels), Is.EqualTo((28, 4, 7, 1)));
        Assert.DoesNotThrow(() => b32.Validate());
        Assert.DoesNotThrow(() => l14.Validate());
    }

    [Test]
    public void InvalidOptionsNameTheOptionAndValue()
    {
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => new ClipConfig { VisionLayers = 0 }.Validate())!;
        Assert.That(e1.ParamName, Is.EqualTo("VisionLayers"));
        Assert.That(e1.Message, Does.Contain("got 0"));
        var e2 = Assert.Throws<ArgumentException>(() => new ClipConfig { ImageResolution = 225 }.Validate())!;
        Assert.That(e2.Message, Does.Contain("ImageResolution (225)").And.Contain("VisionPatchSize (32)"));
        var e3 = Assert.Throws<ArgumentException>(() => ClipConfig.Tiny(width: 30, heads: 4).Validate())!;
        Assert.That(e3.Message, Does.Contain("VisionWidth (30)"));
        var e4 = Assert.Throws<ArgumentException>(() => (ClipConfig.Tiny() with { ImageMean = [0.5, 0.5] }).Validate())!;
        Assert.That(e4.Message, Does.Contain("ImageMean has 2 values").And.Contain("(1)"));
        var e5 = Assert.Throws<ArgumentOutOfRangeException>(() => (ClipConfig.Tiny() with { ImageStd = [0.0] }).Validate())!;
        Assert.That(e5.ParamName, Is.EqualTo("ImageStd"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ClipModel(new ClipConfig { TextLayers = -1 }));
    }

    [Test]
    public void TinyModelHasTheInterfaceShapes()
    {
        using var scope = NewDisposeScope();
        using var model = new ClipModel(ClipConfig.Tiny(width: 32, embedDim: 16, layers: 1));
        model.InitializeParameters(seed: 1);
        IVisionLanguageBackbone backbone = model;
        Assert.That((backbone.FeatureDim, backbone.ImageSize, backbone.InputChannels, backbone.GridSize, backbone.EmbeddingDim, backbone.ContextLength),
            Is.EqualTo((16, 28, 1, (7, 7), 32, 77)));
        using var features = backbone.EncodeImage(rand(2, 1, 28, 28));
        Assert.That(features.ClassFeature.shape, Is.EqualTo(new long[] { 2, 16 }));
        Assert.That(features.GridFeatures.shape, Is.EqualTo(new long[] { 2, 49, 16 }));
        var ids = backbone.Tokenize(["a photo of a sneaker.", "a photo of a bag."]);
        Assert.That(backbone.EncodeText(ids).shape, Is.EqualTo(new long[] { 2, 16 }));
        Assert.That(backbone.EmbedTokens(ids).shape, Is.EqualTo(new long[] { 2, 77, 32 }));
        Assert.That(backbone.LogitScale.item<float>(), Is.EqualTo(1 / 0.07).Within(1e-3));
        Assert.That(backbone.Encode("a photo of a cat"), Is.EqualTo(new[] { 320, 1125, 539, 320, 2368 }));
    }

    [Test]
    public void InitializationIsSeededAndDeterministic()
    {
        using var scope = NewDisposeScope();
        using var a = new ClipModel(ClipConfig.Tiny(width: 32, embedDim: 16, layers: 1));
        using var b = new ClipModel(ClipConfig.Tiny(width: 32, embedDim: 16, layers: 1));
        using var c = new ClipModel(ClipConfig.Tiny(width: 32, embedDim: 16, layers: 1));
        a.InitializeParameters(7);
        b.InitializeParameters(7);
        c.InitializeParameters(8);
        var sa = a.state_dict();
        var sb = b.state_dict();
        Assert.That(sa.All(kv => Fixture.Same(kv.Value, sb[kv.Key])), Is.True, "same seed, same weights");
        Assert.That(Fixture.Same(sa["visual.conv1.weight"], c.state_dict()["visual.conv1.weight"]), Is.False, "another seed, other weights");
        // CLIP's scheme: token embedding N(0, 0.02).
        Assert.That(sa["token_embedding.weight"].std().item<float>(), Is.EqualTo(0.02).Within(0.001));
    }

    [Test]
    public void GreyModelEqualsRgbModelOnReplicatedGreyImages()
    {
        // With equal per-channel normalisation, a 3-channel patch convolution on a grey image replicated to RGB is a
        // 1-channel convolution whose kernel is the sum over the input channels.
        using var scope = NewDisposeScope();
        const double mean = 0.45, std = 0.27;
        using var rgb = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions with { ImageMean = [mean, mean, mean], ImageStd = [std, std, std] });
        var weights = rgb.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        weights["visual.conv1.weight"] = weights["visual.conv1.weight"].sum(1, keepdim: true);
        using var grey = new ClipModel(rgb.Config with { InputChannels = 1, ImageMean = [mean], ImageStd = [std] }, rgb.Tokenizer);
        ClipStateDict.LoadInto(grey, weights);

        var g = rand(2, 1, 32, 32);
        using var fromRgb = rgb.EncodeImage(g.expand(2, 3, 32, 32));
        using var fromGrey = grey.EncodeImage(g);
        Fixture.AssertClose(fromGrey.ClassFeature, fromRgb.ClassFeature, 1e-5, "class feature");
        Fixture.AssertClose(fromGrey.GridFeatures, fromRgb.GridFeatures, 1e-5, "grid features");
    }

    [Test]
    public void ShorterIdSequencesGiveTheSameTextFeatures()
    {
        // Causal attention: tokens up to the end token never see the padding, so cutting the padding changes nothing.
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var ids = Fixture.Reference["token_ids"][..3];
        Fixture.AssertClose(model.EncodeText(ids[.., ..12]), Fixture.Reference["text_features"][..3], 1e-5, "text features from 12 tokens");
    }

    [Test]
    public void BadInputsAreRejectedWithShapes()
    {
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        var e1 = Assert.Throws<ArgumentException>(() => model.EncodeImage(zeros(2, 3, 28, 28)))!;
        Assert.That(e1.Message, Does.Contain("[B, 3, 32, 32]").And.Contain("[2, 3, 28, 28]"));
        Assert.That(e1.ParamName, Is.EqualTo("images"));
        var e2 = Assert.Throws<ArgumentException>(() => model.EncodeText(zeros(2, 78, dtype: ScalarType.Int64)))!;
        Assert.That(e2.Message, Does.Contain("L <= 77").And.Contain("[2, 78]"));
        var e3 = Assert.Throws<ArgumentException>(() => model.EncodeEmbeddings(zeros(2, 77, 31), zeros(2, 77, dtype: ScalarType.Int64)))!;
        Assert.That(e3.Message, Does.Contain("[2, 77, 32]").And.Contain("[2, 77, 31]"));
        var e4 = Assert.Throws<ArgumentException>(() => model.ZeroShotLogits(zeros(1, 3, 32, 32), zeros(3, 15)))!;
        Assert.That(e4.Message, Does.Contain("[K, 16]"));
    }

    [Test]
    public void PixelGradientMatchesFiniteDifference()
    {
        // Attacks differentiate the logits with respect to pixels in [0, 1], through the normalisation inside the model.
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        model.to(ScalarType.Float64);
        var images = Fixture.Reference["images"][..1].to(ScalarType.Float64).requires_grad_(true);
        var ids = Fixture.Reference["token_ids"];
        var loss = model.call(images, ids)[0, 1];
        loss.backward();
        var direction = randn_like(images);
        double analytic = (images.grad! * direction).sum().item<double>();
        const double h = 1e-6;
        using var noGrad = no_grad();
        double plus = model.call(images.Plus(direction.Times(h)), ids)[0, 1].item<double>();
        double minus = model.call(images - direction.Times(h), ids)[0, 1].item<double>();
        Assert.That(analytic, Is.EqualTo((plus - minus) / (2 * h)).Within(1e-5 * Math.Max(1, Math.Abs(analytic))));
    }

    [Test]
    public void PromptEmbeddingGradientMatchesFiniteDifference()
    {
        // Prompt learning trains embeddings fed to EncodeEmbeddings: the gradient must reach them.
        using var scope = NewDisposeScope();
        using var model = ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);
        model.to(ScalarType.Float64);
        var ids = Fixture.Reference["token_ids"][..2];
        var prompts = Fixture.Reference["prompt_embeddings"][..2].to(ScalarType.Float64).requires_grad_(true);
        var weights = randn(2, 16, dtype: ScalarType.Float64);
        (model.EncodeEmbeddings(prompts, ids) * weights).sum().backward();
        var direction = randn_like(prompts);
        double analytic = (prompts.grad! * direction).sum().item<double>();
        const double h = 1e-6;
        using var noGrad = no_grad();
        double plus = (model.EncodeEmbeddings(prompts.Plus(direction.Times(h)), ids) * weights).sum().item<double>();
        double minus = (model.EncodeEmbeddings(prompts - direction.Times(h), ids) * weights).sum().item<double>();
        Assert.That(analytic, Is.Not.Zero);
        Assert.That(analytic, Is.EqualTo((plus - minus) / (2 * h)).Within(1e-5 * Math.Max(1, Math.Abs(analytic))));
    }

    private static Dictionary<string, Tensor> ShapesOfReleasedModel(int visionWidth, int visionLayers, int patch, int textWidth, int embedDim)
    {
        // Uninitialised tensors with the released shapes: sizes must come from shapes and key names alone.
        var d = new Dictionary<string, Tensor>
        {
            ["visual.conv1.weight"] = empty(visionWidth, 3, patch, patch),
            ["visual.positional_embedding"] = empty((224 / patch) * (224 / patch) + 1, visionWidth),
            ["visual.proj"] = empty(visionWidth, embedDim),
            ["text_projection"] = empty(textWidth, embedDim),
            ["positional_embedding"] = empty(77, textWidth),
            ["token_embedding.weight"] = empty(49408, textWidth),
            ["ln_final.weight"] = empty(textWidth),
        };
        for (int i = 0; i < visionLayers; i++) d[$"visual.transformer.resblocks.{i}.attn.in_proj_weight"] = empty(3 * visionWidth, visionWidth);
        for (int i = 0; i < 12; i++) d[$"transformer.resblocks.{i}.attn.in_proj_weight"] = empty(3 * textWidth, textWidth);
        return d;
    }

    [Test]
    public void ReleasedSizesAreInferredFromTensorShapes()
    {
        using var scope = NewDisposeScope();
        Assert.That(ClipStateDict.InferConfig(ShapesOfReleasedModel(768, 12, 32, 512, 512)), Is.EqualTo(ClipConfig.ViTB32()));
        Assert.That(ClipStateDict.InferConfig(ShapesOfReleasedModel(768, 12, 16, 512, 512)), Is.EqualTo(ClipConfig.ViTB16()));
        Assert.That(ClipStateDict.InferConfig(ShapesOfReleasedModel(1024, 24, 14, 768, 768)), Is.EqualTo(ClipConfig.ViTL14()));
    }
}
