using System.Text.Json;
using Defeat.Attacks;

namespace Defeat.Tests.Attacks;

/// <summary>
/// APGD-CE against fra31/auto-attack under PyTorch (Fixtures/apgd_parity.json, written by
/// Fixtures/make_apgd_fixtures.py): the same float64 MLP, images and labels, started from the clean images so no
/// random numbers are involved. Step size, momentum, checkpoints, halving and restarts from the best point must all
/// agree for the final points to agree.
/// </summary>
public class ApgdParityTests
{
    private static JsonElement Fixture()
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "apgd_parity.json");
        return JsonDocument.Parse(File.ReadAllText(path)).RootElement;
    }

    private static Tensor Read(JsonElement root, string name, params long[] shape) =>
        tensor(root.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray(), dtype: ScalarType.Float64).reshape(shape);

    [Test]
    public void ApgdCeMatchesTheReferenceImplementation()
    {
        using var scope = NewDisposeScope();
        var root = Fixture();
        int inputs = root.GetProperty("inputs").GetInt32(), hidden = root.GetProperty("hidden").GetInt32(), classes = root.GetProperty("classes").GetInt32();
        var w1 = Read(root, "w1", hidden, inputs);
        var b1 = Read(root, "b1", hidden);
        var w2 = Read(root, "w2", classes, hidden);
        var b2 = Read(root, "b2", classes);
        Tensor Model(Tensor x) => tanh(x.flatten(1).matmul(w1.t()).Plus(b1)).matmul(w2.t()).Plus(b2);
        var shape = root.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        var x = Read(root, "x", shape);
        var y = tensor(root.GetProperty("y").EnumerateArray().Select(e => e.GetInt64()).ToArray());

        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            var norm = c.GetProperty("norm").GetString() == "Linf" ? AttackNorm.LInf : AttackNorm.L2;
            var eps = c.GetProperty("epsilon").GetDouble();
            var iterations = c.GetProperty("iterations").GetInt32();
            var attack = new ApgdAttack(new ApgdOptions
            {
                Epsilon = eps, Norm = norm, Iterations = iterations, Loss = AttackLoss.CrossEntropy, RandomStart = false, Restarts = 1,
            });

            var adv = attack.Perturb(Model, x, y);

            var expected = Read(c, "result", shape);
            var fooled = c.GetProperty("fooled").EnumerateArray().Select(e => e.GetBoolean()).ToArray();
            var label = $"{norm} eps {eps} N {iterations}";
            Assert.That(Model(adv).argmax(1).ne(y).data<bool>().ToArray(), Is.EqualTo(fooled), label);
            var error = (adv - expected).abs().max().item<double>();
            TestContext.Out.WriteLine($"{label}: {fooled.Count(f => f)} fooled, largest difference {error:E2}");
            Assert.That(error, Is.LessThan(1e-9), label);
        }
    }
}
