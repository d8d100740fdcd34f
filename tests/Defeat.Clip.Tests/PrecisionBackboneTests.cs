using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Model;
using Defeat.Shield;

namespace Defeat.Tests.Clip;

/// <summary>
/// The backbone wrapper behind --half, checked on the CPU with float64 as the backbone's type (the cast logic is the
/// same for float16; CPU half arithmetic is what the sample refuses): outputs leave as float32, equal to the wrapped
/// model's own outputs, and gradients pass through.
/// </summary>
public class PrecisionBackboneTests
{
    private static ClipModel Load() => ClipLoader.Load(Fixture.File("tiny_openai.pt"), Fixture.TinyOptions);

    [Test]
    public void OutputsAreFloat32CastsOfTheBackbonesOwn()
    {
        using var wrapped = Load();
        using var reference = Load();
        reference.to(ScalarType.Float64);
        var backbone = new PrecisionBackbone(wrapped, ScalarType.Float64);
        Assert.That(wrapped.parameters().Select(p => p.dtype), Has.All.EqualTo(ScalarType.Float64), "the wrapped model is converted");

        var images = rand([2, 3, 32, 32], generator: new Generator(4));
        using var features = backbone.EncodeImage(images);
        using var expected = reference.EncodeImage(images.to(ScalarType.Float64));
        Assert.That(features.ClassFeature.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(features.GridFeatures.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(features.ClassFeature.equal(expected.ClassFeature.to(ScalarType.Float32)).all().item<bool>(), Is.True);
        Assert.That(features.GridFeatures.equal(expected.GridFeatures.to(ScalarType.Float32)).all().item<bool>(), Is.True);

        var ids = backbone.Tokenize(["a photo of a cat."]);
        var embeddings = backbone.EmbedTokens(ids);
        Assert.That(embeddings.dtype, Is.EqualTo(ScalarType.Float32));
        var text = backbone.EncodeEmbeddings(embeddings, ids);
        Assert.That(text.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(text.equal(reference.EncodeText(ids).to(ScalarType.Float32)).all().item<bool>(), Is.True);
        Assert.That(backbone.LogitScale.dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(backbone.LogitScale.item<float>(), Is.EqualTo((float)reference.LogitScale.item<double>()));
    }

    [Test]
    public void DefeatTrainsFloat32PartsOnTopAndGradientsReachThePixels()
    {
        using var clip = Load();
        var backbone = new PrecisionBackbone(clip, ScalarType.Float64);
        using var model = DefeatModel.Create(backbone, ["sky", "apple"], shieldOptions: new PerturbShieldOptions { HiddenDim = 8, CodebookSize = 16 });
        Assert.That(model.TrainableParameters().Select(p => p.dtype), Has.All.EqualTo(ScalarType.Float32));
        Assert.That(clip.parameters().Select(p => p.requires_grad), Has.All.False, "the wrapped backbone is frozen through the wrapper");

        var images = rand([2, 3, 32, 32], generator: new Generator(5)).requires_grad_(true);
        var output = model.forward(images, tensor(new long[] { 0, 1 }));
        Assert.That(output.Logits.dtype, Is.EqualTo(ScalarType.Float32));
        output.Total.backward();
        Assert.That(images.grad, Is.Not.Null);
        Assert.That(images.grad!.abs().sum().item<float>(), Is.GreaterThan(0f));
        var ctx = model.TrainableParameters().First(p => p.shape.Length == 2 && p.shape[1] == clip.EmbeddingDim);
        Assert.That(ctx.grad, Is.Not.Null, "the prompt context learns through the wrapped text encoder");
    }

    [Test]
    public void RefusesANonFloatingType()
    {
        using var clip = Load();
        var e = Assert.Throws<ArgumentException>(() => new PrecisionBackbone(clip, ScalarType.Int32))!;
        Assert.That(e.Message, Does.Contain("computeType must be a floating-point type such as Float16; got Int32"));
    }
}
