using Defeat.Attacks;

namespace Defeat.Tests.Attacks;

public class AttackObjectivesTests
{
    [Test]
    public void ObjectivesMatchHandComputation()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(new float[] { 1, 3, 2, 0, 4, 0, -1, 2 }).reshape(2, 4);
        var labels = tensor(new long[] { 0, 3 });

        // Row 0 = (1,3,2,0), label 0: z_y = 1, best other 3, sorted (3,2,1,0).
        // Row 1 = (4,0,-1,2), label 3: z_y = 2, best other 4, sorted (4,2,0,-1).
        var ce0 = -(1 - Math.Log(Math.Exp(1) + Math.Exp(3) + Math.Exp(2) + Math.Exp(0)));
        var ce1 = -(2 - Math.Log(Math.Exp(4) + Math.Exp(0) + Math.Exp(-1) + Math.Exp(2)));
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.CrossEntropy, false).data<float>().ToArray(),
            Is.EqualTo(new[] { ce0, ce1 }).Within(1e-5));
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.Margin, false).data<float>().ToArray(),
            Is.EqualTo(new[] { 2f, 2f }).Within(1e-6));
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.Dlr, false).data<float>().ToArray(),
            Is.EqualTo(new[] { 2.0 / (3 - 1), 2.0 / (4 - 0) }).Within(1e-6));
        // Targeted toward labels: margin z_t - max other, DLR over z_pi1 - (z_pi3 + z_pi4) / 2.
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.Margin, true).data<float>().ToArray(),
            Is.EqualTo(new[] { -2f, -2f }).Within(1e-6));
        Assert.That(AttackObjectives.PerSample(logits, labels, AttackLoss.Dlr, true).data<float>().ToArray(),
            Is.EqualTo(new[] { -2.0 / (3 - 0.5), -2.0 / (4 + 0.5) }).Within(1e-6));
        Assert.That(AttackObjectives.Success(logits, labels, false).data<bool>().ToArray(), Is.EqualTo(new[] { true, true }));
        Assert.That(AttackObjectives.Success(logits, tensor(new long[] { 1, 0 }), true).data<bool>().ToArray(), Is.EqualTo(new[] { true, true }));
    }

    [Test]
    public void DlrNeedsEnoughClasses()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() =>
            AttackObjectives.PerSample(zeros(2, 2), tensor(new long[] { 0, 1 }), AttackLoss.Dlr, false));
        Assert.That(e!.Message, Does.Contain("at least 3 classes"));
    }
}
