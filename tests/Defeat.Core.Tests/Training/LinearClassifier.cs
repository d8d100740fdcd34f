using Defeat.Model;
using TorchSharp.Modules;
using static TorchSharp.torch.nn;

namespace Defeat.Tests.Training;

/// <summary>The smallest model the trainer can train: a linear map from pixels to logits.</summary>
internal sealed class LinearClassifier : Module<Tensor, Tensor>, ITrainableClassifier
{
    private readonly Linear fc;

    public LinearClassifier(int pixels, int classes, long seed) : base(nameof(LinearClassifier))
    {
        manual_seed(seed);
        fc = Linear(pixels, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor images) => fc.call(images.flatten(1));

    public IEnumerable<Parameter> TrainableParameters() => parameters();

    public IReadOnlyDictionary<string, Tensor> TrainableState() =>
        state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) =>
        Defeat.Checkpoints.StateDictCopy.CopyInto(state_dict(), state);

    public Func<Tensor, Tensor> AttackTarget() => forward;

    public TrainingLoss Loss(Tensor images, Tensor labels)
    {
        var ce = functional.cross_entropy(forward(images), labels);
        return new TrainingLoss(ce, new Dictionary<string, Tensor> { ["ce"] = ce });
    }

    public void SetTraining(bool training) => train(training);
}
