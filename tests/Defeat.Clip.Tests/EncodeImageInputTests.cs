using Defeat.Clip;

namespace Defeat.Tests.Clip;

/// <summary>ClipModel.EncodeImage on unusual input: wrong rank, channels and dtype are refused; an empty batch is allowed;
/// pixel values are not checked (documented: attacks and the evaluator check them once per call).</summary>
public class EncodeImageInputTests
{
    private static ClipModel Tiny()
    {
        var clip = new ClipModel(ClipConfig.Tiny(imageResolution: 8, patchSize: 2, inputChannels: 1, width: 32, layers: 1, heads: 1, embedDim: 16));
        clip.InitializeParameters(seed: 3);
        clip.eval();
        return clip;
    }

    [Test]
    public void WrongRankChannelsAndDtypeAreRefused()
    {
        using var clip = Tiny();
        var rank = Assert.Throws<ArgumentException>(() => clip.EncodeImage(zeros(1, 8, 8)))!;
        Assert.That(rank.ParamName, Is.EqualTo("images"));
        Assert.That(rank.Message, Does.Contain("[B, 1, 8, 8]").And.Contain("[1, 8, 8]"));
        Assert.That(Assert.Throws<ArgumentException>(() => clip.EncodeImage(zeros(2, 3, 8, 8)))!.Message, Does.Contain("[2, 3, 8, 8]"));
        Assert.That(Assert.Throws<ArgumentException>(() => clip.EncodeImage(zeros(2, 1, 8, 8, dtype: ScalarType.Byte)))!.Message, Does.Contain("Byte"));
    }

    [Test]
    public void AnEmptyBatchGivesEmptyFeaturesAndNaNPixelsPropagate()
    {
        using var clip = Tiny();
        using (no_grad())
        {
            using var none = clip.EncodeImage(zeros(0, 1, 8, 8));
            Assert.That(none.ClassFeature.shape, Is.EqualTo(new long[] { 0, 16 }));
            Assert.That(none.GridFeatures.shape, Is.EqualTo(new long[] { 0, 16, 16 }));

            var x = ScalarOps.Full([2, 1, 8, 8], 0.5f);
            x[1, 0, 3, 3] = tensor(float.NaN);
            using var features = clip.EncodeImage(x);
            // The clean image is unaffected; the NaN shows up in its own image's features instead of being hidden.
            Assert.That(features.ClassFeature[0].isfinite().all().item<bool>(), Is.True);
            Assert.That(features.ClassFeature[1].isnan().any().item<bool>(), Is.True);
        }
    }
}
