using Defeat.Quantization;

namespace Defeat.Tests.Quantization;

/// <summary>Bad options and bad tensors are rejected with messages that say what was wrong.</summary>
public class VectorQuantizerValidationTests
{
    private static IEnumerable<TestCaseData> BadOptions()
    {
        yield return new TestCaseData(new VectorQuantizerOptions { CodebookSize = 0 }, "CodebookSize", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { Dim = -3 }, "Dim", "-3");
        yield return new TestCaseData(new VectorQuantizerOptions { CommitmentWeight = -0.5 }, "CommitmentWeight", "-0.5");
        yield return new TestCaseData(new VectorQuantizerOptions { CommitmentWeight = double.NaN }, "CommitmentWeight", "NaN");
        yield return new TestCaseData(new VectorQuantizerOptions { Decay = 1.0 }, "Decay", "1");
        yield return new TestCaseData(new VectorQuantizerOptions { Epsilon = 0 }, "Epsilon", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { KMeansIterations = 0 }, "KMeansIterations", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { DeadCodeThreshold = -1 }, "DeadCodeThreshold", "-1");
        yield return new TestCaseData(new VectorQuantizerOptions { InitScale = 0 }, "InitScale", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { ChunkSize = 0 }, "ChunkSize", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { MaxDistanceBytes = 0 }, "MaxDistanceBytes", "0");
        yield return new TestCaseData(new VectorQuantizerOptions { Distance = (QuantizerDistance)7 }, "Distance", "7");
        yield return new TestCaseData(new VectorQuantizerOptions { CodebookUpdate = (CodebookUpdate)9 }, "CodebookUpdate", "9");
    }

    [TestCaseSource(nameof(BadOptions))]
    public void OptionsOutOfRangeThrowNamingTheOptionAndTheValue(VectorQuantizerOptions options, string name, string value)
    {
        var error = Assert.Throws(Is.InstanceOf<ArgumentException>(), () => new VectorQuantizer(options).Dispose());
        var argumentError = (ArgumentException)error!;
        Assert.That(argumentError.ParamName, Is.EqualTo(name));
        Assert.That(argumentError.Message, Does.Contain(name).And.Contain($"got {value}"));
    }

    [Test]
    public void WrongLastDimensionThrowsWithTheShapes()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 4, Dim = 8 });
        var error = Assert.Throws<ArgumentException>(() => vq.Quantize(zeros(2, 3, 7)))!;
        Assert.That(error.ParamName, Is.EqualTo("input"));
        Assert.That(error.Message, Does.Contain("[..., 8]").And.Contain("[2, 3, 7]"));
        var scalar = Assert.Throws<ArgumentException>(() => vq.Quantize(tensor(1f)))!;
        Assert.That(scalar.Message, Does.Contain("got Float32 []"));
    }

    [Test]
    public void NonFloatingInputThrowsWithTheDtype()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 4, Dim = 2 });
        var error = Assert.Throws<ArgumentException>(() => vq.Quantize(zeros(3, 2, dtype: ScalarType.Int32)))!;
        Assert.That(error.ParamName, Is.EqualTo("input"));
        Assert.That(error.Message, Does.Contain("float32 or float64").And.Contain("Int32"));
        Assert.Throws<ArgumentException>(() => vq.Quantize(zeros(3, 2, dtype: ScalarType.Float16)));
    }

    [Test]
    public void InputDtypeOtherThanTheCodebooksThrowsAndSaysHowToConvert()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 4, Dim = 2 });
        var error = Assert.Throws<ArgumentException>(() => vq.Quantize(zeros(3, 2, dtype: ScalarType.Float64)))!;
        Assert.That(error.Message, Does.Contain("Float32").And.Contain("got Float64").And.Contain(".to("));
    }

    [Test]
    public void LookupRejectsNonInt64AndOutOfRangeIndices()
    {
        using var scope = NewDisposeScope();
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 4, Dim = 2 });
        var dtype = Assert.Throws<ArgumentException>(() => vq.Lookup(zeros(3, dtype: ScalarType.Int32)))!;
        Assert.That(dtype.ParamName, Is.EqualTo("indices"));
        Assert.That(dtype.Message, Does.Contain("int64").And.Contain("Int32"));
        var range = Assert.Throws<ArgumentException>(() => vq.Lookup(tensor(new long[] { 0, 4, 2 })))!;
        Assert.That(range.Message, Does.Contain("[0, 4)").And.Contain("from 0 to 4"));
        var negative = Assert.Throws<ArgumentException>(() => vq.Lookup(tensor(new long[] { -1, 3 })))!;
        Assert.That(negative.Message, Does.Contain("from -1 to 3"));
    }

    [Test]
    public void KernelRejectsMismatchedShapes()
    {
        using var scope = NewDisposeScope();
        var error = Assert.Throws<ArgumentException>(() => NearestCodeSearch.Find(zeros(5, 3), zeros(4, 2), QuantizerDistance.Euclidean, 8))!;
        Assert.That(error.ParamName, Is.EqualTo("codebook"));
        Assert.That(error.Message, Does.Contain("[K, 3]").And.Contain("[4, 2]"));
    }
}
