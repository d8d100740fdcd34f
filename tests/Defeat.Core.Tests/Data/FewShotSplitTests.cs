using Defeat.Data;

namespace Defeat.Tests.Data;

public class FewShotSplitTests
{
    private static long[] Labels(int perClass, int classes) =>
        Enumerable.Range(0, perClass * classes).Select(i => (long)(i % classes)).ToArray();

    [Test]
    public void DrawsExactlyShotsPerClassDisjointFromTheRest()
    {
        var labels = Labels(perClass: 30, classes: 4);
        var split = FewShotSplit.Draw(labels, 4, shots: 16, seed: 7);
        Assert.That(split.FewShot, Has.Count.EqualTo(64));
        Assert.That(split.FewShot.Distinct().Count(), Is.EqualTo(64), "drawn without replacement");
        for (int c = 0; c < 4; c++)
            Assert.That(split.FewShot.Count(i => labels[i] == c), Is.EqualTo(16));
        Assert.That(split.FewShot.Intersect(split.Rest), Is.Empty);
        Assert.That(split.FewShot.Concat(split.Rest).OrderBy(i => i), Is.EqualTo(Enumerable.Range(0, 120).Select(i => (long)i)));
    }

    [Test]
    public void SameSeedSameSplitOtherSeedOtherSplit()
    {
        var labels = Labels(perClass: 50, classes: 3);
        var a = FewShotSplit.Draw(labels, 3, 5, seed: 1);
        var b = FewShotSplit.Draw(labels, 3, 5, seed: 1);
        var c = FewShotSplit.Draw(labels, 3, 5, seed: 2);
        Assert.That(b.FewShot, Is.EqualTo(a.FewShot));
        Assert.That(c.FewShot, Is.Not.EqualTo(a.FewShot));
    }

    [Test]
    public void TooFewImagesOrBadLabelsAreClearErrors()
    {
        var e = Assert.Throws<ArgumentException>(() => FewShotSplit.Draw(Labels(3, 2), 2, 4, 0))!;
        Assert.That(e.Message, Does.Contain("Class 0 has 3 images; expected at least 4"));
        Assert.That(e.ParamName, Is.EqualTo("labels"));
        Assert.That(Assert.Throws<ArgumentException>(() => FewShotSplit.Draw([0, 5], 2, 1, 0))!.Message,
            Does.Contain("got 5 at position 1"));
    }

    [Test]
    public void SubsetCopiesTheChosenImagesInOrder()
    {
        // Pixels must lie in [0, 1] (LabeledImages checks them): 0, 0.1, ..., 0.5.
        using var stop = 6f.ToScalar();
        using var images = arange(stop).Over(10).reshape(3, 1, 1, 2);
        using var set = new LabeledImages(images.clone(), tensor(new long[] { 0, 1, 0 }), ["a", "b"]);
        using var sub = set.Subset([2, 0]);
        Assert.That(sub.Images.data<float>().ToArray(), Is.EqualTo(new float[] { 0.4f, 0.5f, 0f, 0.1f }));
        Assert.That(sub.LabelArray(), Is.EqualTo(new long[] { 0, 0 }));
        Assert.That(Assert.Throws<ArgumentException>(() => new LabeledImages(images.clone(), tensor(new long[] { 0, 2, 0 }), ["a", "b"]))!.Message,
            Does.Contain("in [0, 1] for 2 classes").And.Contain("got labels in [0, 2]"));
    }
}
