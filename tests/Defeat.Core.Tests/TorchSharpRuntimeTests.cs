using static TorchSharp.torch.nn;

namespace Defeat.Tests;

/// <summary>
/// Proves that TorchSharp's native library loads and works on this machine (on Debian 12 only
/// thanks to the libstdc++ compatibility step in buildTransitive/Defeat.Core.targets).
/// </summary>
public class TorchSharpRuntimeTests
{
    [Test]
    public void TensorMathMatchesHandComputation()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var b = tensor(new float[] { 5, 6, 7, 8 }).reshape(2, 2);
        // [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]
        Assert.That(a.matmul(b).data<float>().ToArray(), Is.EqualTo(new float[] { 19, 22, 43, 50 }));
    }

    [Test]
    public void AutogradGivesAnalyticGradient()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new double[] { 1.5, -2.0, 3.0 }, requires_grad: true);
        // d/dx sum(x^3) = 3 x^2
        x.Pow(3).sum().backward();
        Assert.That(x.grad!.data<double>().ToArray(), Is.EqualTo(new[] { 6.75, 12.0, 27.0 }).Within(1e-12));
    }

    [Test]
    public void LinearModuleForwardAndOptimiserStep()
    {
        using var scope = NewDisposeScope();
        var layer = Linear(2, 1);
        using (no_grad())
        {
            layer.weight!.copy_(tensor(new float[] { 2, -1 }).reshape(1, 2));
            layer.bias!.copy_(tensor(new float[] { 0.5f }));
        }
        var y = layer.call(tensor(new float[] { 3, 4 }).reshape(1, 2));
        Assert.That(y.item<float>(), Is.EqualTo(2.5f)); // 2*3 - 1*4 + 0.5

        // One SGD step on loss = y with lr 0.1 moves w by -0.1 * x.
        using var sgd = new Defeat.Training.MomentumSgd(layer.parameters(), 0.1, momentum: 0);
        y.backward();
        sgd.Step();
        Assert.That(layer.weight!.data<float>().ToArray(), Is.EqualTo(new[] { 2 - 0.3f, -1 - 0.4f }).Within(1e-6));
    }
}
