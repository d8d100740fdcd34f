namespace Defeat.Tests;

/// <summary>The one dispose / move-out mechanism of the result records.</summary>
public class TensorResultTests
{
    private sealed record Pair(Tensor First, Tensor Second, Tensor? Missing) : TensorResult
    {
        protected override IEnumerable<Tensor?> Fields() => [First, Second, Missing];
    }

    [Test]
    public void ASharedTensorIsMovedOutAndDisposedOnce()
    {
        var outer = NewDisposeScope();
        Pair result;
        Tensor inner;
        using (NewDisposeScope())
        {
            var shared = ones(2);
            inner = zeros(3); // not part of the result: disposed with the inner scope
            result = new Pair(shared, shared, null).MoveToOuterDisposeScope();
        }
        Assert.That(inner.IsInvalid, Is.True, "the inner scope disposed what was not moved out");
        // Moved once: it now belongs to `outer` and survives the inner scope (moving it twice would have sent it past `outer`).
        Assert.That(result.First.IsInvalid, Is.False);
        Assert.That(result.Tensors(), Has.Count.EqualTo(1));
        Assert.That(result.First.sum().item<float>(), Is.EqualTo(2f));

        outer.Dispose();
        Assert.That(result.First.IsInvalid, Is.True, "the outer scope owns the moved tensor");
    }

    [Test]
    public void DisposeReleasesEveryDistinctTensor()
    {
        var a = ones(2);
        var b = ones(3);
        var result = new Pair(a, b, null);
        Assert.That(result.Tensors(), Is.EqualTo(new[] { a, b }).Using<Tensor>((x, y) => ReferenceEquals(x, y)));
        result.Dispose();
        Assert.That(a.IsInvalid && b.IsInvalid, Is.True);
        Assert.DoesNotThrow(result.Dispose, "disposing twice is harmless");
    }
}
