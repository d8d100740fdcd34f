using Defeat.Checkpoints;

namespace Defeat.Tests.Checkpoints;

public class StateDictCopyTests
{
    [Test]
    public void EveryMismatchIsListedAndNothingIsCopied()
    {
        using var scope = NewDisposeScope();
        var target = new Dictionary<string, Tensor> { ["a"] = zeros(2, 3), ["b"] = zeros(4), ["c"] = zeros(1) };
        var source = new Dictionary<string, Tensor> { ["a"] = ones(2, 3), ["b"] = ones(5), ["x"] = ones(7), ["note"] = ones(1) };

        Assert.That(StateDictCopy.Mismatches(target, source, ["note"]), Is.EqualTo(new[]
        {
            "wrong shape for 'b': expected [4], found [5]",
            "missing key 'c': expected shape [1]",
            "unexpected key 'x': found shape [7]",
        }));
        var e = Assert.Throws<ArgumentException>(() => StateDictCopy.CopyInto(target, source, ["note"]))!;
        Assert.That(e.Message, Does.Contain("3 problem(s)").And.Contain("missing key 'c'"));
        Assert.That(target["a"].sum().item<float>(), Is.EqualTo(0f), "nothing is copied when anything does not fit");
    }

    [Test]
    public void AFittingStateIsCopiedWithItsDtypeConvertedAndIgnoredKeysSkipped()
    {
        using var scope = NewDisposeScope();
        var target = new Dictionary<string, Tensor> { ["w"] = zeros(2, dtype: ScalarType.Float32) };
        var source = new Dictionary<string, Tensor> { ["w"] = tensor(new[] { 1.5, -2.0 }), ["context_length"] = tensor(77L) };
        StateDictCopy.CopyInto(target, source, ["context_length"]);
        Assert.That(target["w"].dtype, Is.EqualTo(ScalarType.Float32));
        Assert.That(target["w"].data<float>().ToArray(), Is.EqualTo(new[] { 1.5f, -2f }));
    }
}
