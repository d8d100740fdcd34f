using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Checkpoints;
using Defeat.Data;
using Defeat.Validation;
using Defeat.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Training;

/// <summary>
/// DEFEAT's training loop: every step attacks the batch with PGD and trains on the adversarial
/// images only, with SGD, a constant warm-up epoch and a cosine schedule (method.md).
/// </summary>
/// <remarks>
/// <para>After each epoch the trainable state and the optimiser's momentum are written to
/// <see cref="DefeatTrainerOptions.CheckpointDirectory"/> (see <see cref="CheckpointStore"/>), and a
/// later call resumes from the newest valid one. Batch order, augmentation and attack starts are
/// drawn from generators seeded by (seed, epoch, step), so a resumed run equals an uninterrupted
/// one and the same seed gives the same weights on CPU.</para>
/// <para>The attack runs with the model in evaluation mode (a quantizer neither updates its
/// codebook nor restarts codes while the attacker probes it); the loss step runs in training mode.</para>
/// </remarks>
public sealed class DefeatTrainer
{
    private const string ModelPrefix = "model.";
    private const string MomentumPrefix = "optimizer.momentum.";
    // Checkpoints before MomentumSgd held TorchSharp's SGD state under this key; its momentum is not read back.
    private const string LegacyOptimizerKey = "optimizer.state";
    private readonly ILogger _logger;

    /// <summary>Creates a trainer; options are validated here.</summary>
    public DefeatTrainer(DefeatTrainerOptions? options = null, ILogger<DefeatTrainer>? logger = null)
    {
        Options = options ?? new DefeatTrainerOptions();
        Options.Validate();
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    /// <summary>The options in force.</summary>
    public DefeatTrainerOptions Options { get; }

    /// <summary>Trains <paramref name="model"/> on <paramref name="trainSet"/>.</summary>
    /// <param name="model">The model; left in evaluation mode when training ends.</param>
    /// <param name="trainSet">The (few-shot) training images.</param>
    /// <param name="metadata">Extra metadata for each checkpoint (class names, backbone, ...).</param>
    /// <param name="progress">Receives a report after every step.</param>
    /// <param name="cancellationToken">Stops between steps; the last completed epoch's checkpoint stays usable.</param>
    /// <returns>One summary per epoch trained in this call.</returns>
    /// <exception cref="TrainingDivergedException">A step's loss or a gradient is NaN or infinite ("training diverged at
    /// epoch E, step S"); that step is not applied, and the epoch in progress is not checkpointed.</exception>
    public IReadOnlyList<EpochSummary> Train(ITrainableClassifier model, LabeledImages trainSet, JsonObject? metadata = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainSet);
        if (trainSet.Count == 0)
            throw new ArgumentException("trainSet is empty; expected at least one image.", nameof(trainSet));
        // LabeledImages checked its labels when it was built; they may have been written since.
        TensorChecks.RequireLabels(trainSet.Labels, trainSet.Count, nameof(trainSet), trainSet.ClassNames.Count);
        if (model.ClassNames is { } classes && classes.Count != trainSet.ClassNames.Count)
            throw new ArgumentException($"trainSet has {trainSet.ClassNames.Count} classes but the model was built for " +
                $"{classes.Count} ({string.Join(", ", classes)}); expected the same class list.", nameof(trainSet));

        var parameters = model.TrainableParameters().ToList();
        if (parameters.Count == 0)
            throw new ArgumentException("The model has no trainable parameters.", nameof(model));
        using var optimizer = new MomentumSgd(parameters, Options.LearningRate, Options.Momentum, Options.WeightDecay);
        var store = Options.CheckpointDirectory is null ? null : new CheckpointStore(Options.CheckpointDirectory);
        int startEpoch = store is not null && Options.Resume ? Restore(store, model, optimizer) : 0;

        int stepsPerEpoch = (int)((trainSet.Count + Options.BatchSize - 1) / Options.BatchSize);
        int totalSteps = stepsPerEpoch * Options.Epochs;
        var summaries = new List<EpochSummary>();
        try
        {
            for (int epoch = startEpoch; epoch < Options.Epochs; epoch++)
            {
                double lr = Options.LearningRateAt(epoch);
                optimizer.LearningRate = lr;
                var sums = new Dictionary<string, double>();
                double lossSum = 0;

                using var orderGenerator = Generator(epoch, -1);
                using var order = randperm(trainSet.Count, generator: orderGenerator);
                for (int step = 0; step < stepsPerEpoch; step++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    long first = (long)step * Options.BatchSize;
                    var index = order.narrow(0, first, Math.Min(Options.BatchSize, trainSet.Count - first));
                    using var stepGenerator = Generator(epoch, step);
                    var x = Augment(trainSet.Images.index_select(0, index), stepGenerator);
                    var y = trainSet.Labels.index_select(0, index);
                    // Batches are drawn and augmented where the training set lives (seeded CPU generators), then moved.
                    if (Options.Device is { } device)
                    {
                        x = x.to(device);
                        y = y.to(device);
                    }

                    model.SetTraining(false);
                    var attack = new PgdAttack(Options.Attack with { Seed = (ulong)Mix(epoch, step) });
                    var adversarial = attack.Perturb(model.AttackTarget(), x, y, cancellationToken);
                    model.SetTraining(true);

                    var loss = model.Loss(adversarial, y, x);
                    double value = loss.Total.item<float>();
                    if (!double.IsFinite(value))
                        throw Diverged(store, epoch, step, stepsPerEpoch, value, $"the loss is {value}");
                    optimizer.ZeroGrad();
                    loss.Total.backward();
                    // A finite loss can still have a NaN gradient (sqrt at 0, a log of 0 times 0): never apply one.
                    if (!GradientsAreFinite(parameters))
                        throw Diverged(store, epoch, step, stepsPerEpoch, value, $"the loss is {value} but a gradient is NaN or infinite");
                    optimizer.Step();

                    lossSum += value;
                    foreach (var (name, part) in loss.Parts)
                        sums[name] = sums.GetValueOrDefault(name) + part.item<float>();
                    progress?.Report(new TrainingProgress(epoch + 1, Options.Epochs, epoch * stepsPerEpoch + step + 1, totalSteps, value, lr));
                }

                var summary = new EpochSummary(epoch + 1, lr, lossSum / stepsPerEpoch,
                    sums.ToDictionary(kv => kv.Key, kv => kv.Value / stepsPerEpoch));
                summaries.Add(summary);
                _logger.LogInformation("epoch {Epoch}/{Epochs} lr {Lr:G3} loss {Loss:F4} ({Parts})", epoch + 1, Options.Epochs, lr,
                    summary.MeanLoss, string.Join(", ", summary.MeanParts.Select(kv => $"{kv.Key} {kv.Value:F4}")));
                if (store is not null) Save(store, epoch + 1, model, optimizer, summary, metadata);
            }
        }
        finally
        {
            model.SetTraining(false);
        }
        return summaries;
    }

    private static bool GradientsAreFinite(IReadOnlyList<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var flags = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!.isfinite().all()).ToArray();
        return flags.Length == 0 || stack(flags).all().item<bool>();
    }

    private TrainingDivergedException Diverged(CheckpointStore? store, int epoch, int step, int stepsPerEpoch, double loss, string reason)
    {
        string kept = store is null
            ? "no checkpoint folder is set"
            : epoch == 0 ? $"no epoch completed, so {store.Directory} holds no checkpoint of this run"
            : $"the last good checkpoint, epoch-{epoch:D4} in {store.Directory}, is kept";
        var e = new TrainingDivergedException(epoch + 1, step + 1, epoch * stepsPerEpoch + step + 1, loss,
            $"training diverged at epoch {epoch + 1}, step {step + 1} (step {epoch * stepsPerEpoch + step + 1} of the run): {reason}; " +
            $"the step was not applied and {kept}. Lower the learning rate or check the data and the loss.");
        _logger.LogError("{Message}", e.Message);
        return e;
    }

    private int Restore(CheckpointStore store, ITrainableClassifier model, MomentumSgd optimizer)
    {
        var skipped = new List<string>();
        using var checkpoint = store.LoadLatest(skipped);
        foreach (var reason in skipped) _logger.LogWarning("Skipping a broken checkpoint: {Reason}", reason);
        if (checkpoint is null) return 0;
        ulong seed = Options.Seed;
        var recorded = checkpoint.Metadata["trainer"] is JsonObject trainer ? trainer["seed"] : null;
        if (recorded is not null && !(recorded is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number && v.TryGetValue(out seed)))
            throw new CheckpointException($"{checkpoint.TensorsPath}: its metadata's trainer.seed is {recorded.ToJsonString()}; expected an integer.");
        if (seed != Options.Seed)
            throw new CheckpointException($"{checkpoint.TensorsPath}: written with seed {seed}; this trainer has seed {Options.Seed}. Resume with the same seed or use another folder.");
        if (checkpoint.Epoch > Options.Epochs)
            throw new CheckpointException($"{checkpoint.TensorsPath}: written after epoch {checkpoint.Epoch}; this trainer plans only {Options.Epochs} epochs.");

        var state = checkpoint.Tensors.Where(kv => kv.Key.StartsWith(ModelPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[ModelPrefix.Length..], kv => kv.Value);
        try { model.LoadTrainableState(state); }
        catch (ArgumentException e) { throw new CheckpointException($"{checkpoint.TensorsPath}: does not fit the model: {e.Message}", e); }
        int buffers = 0;
        foreach (var (key, value) in checkpoint.Tensors.Where(kv => kv.Key.StartsWith(MomentumPrefix, StringComparison.Ordinal)))
        {
            if (!int.TryParse(key.AsSpan(MomentumPrefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index))
                throw new CheckpointException($"{checkpoint.TensorsPath}: tensor \"{key}\" is not {MomentumPrefix}<parameter index>.");
            try { optimizer.LoadBuffer(index, value); }
            catch (ArgumentException e) { throw new CheckpointException($"{checkpoint.TensorsPath}: {key} does not fit the model: {e.Message}", e); }
            buffers++;
        }
        if (buffers == 0 && checkpoint.Tensors.ContainsKey(LegacyOptimizerKey))
            _logger.LogWarning("{Path} holds the optimizer state of an older release; momentum restarts from zero", checkpoint.TensorsPath);
        _logger.LogInformation("Resumed from {Path} after epoch {Epoch}", checkpoint.TensorsPath, checkpoint.Epoch);
        return checkpoint.Epoch;
    }

    private void Save(CheckpointStore store, int epoch, ITrainableClassifier model, MomentumSgd optimizer, EpochSummary summary, JsonObject? metadata)
    {
        using var scope = NewDisposeScope();
        var tensors = model.TrainableState().ToDictionary(kv => ModelPrefix + kv.Key, kv => kv.Value);
        foreach (var (index, buffer) in optimizer.Buffers())
            tensors[MomentumPrefix + index.ToString(System.Globalization.CultureInfo.InvariantCulture)] = buffer.detach();
        var meta = metadata?.DeepClone().AsObject() ?? [];
        meta["trainer"] = new JsonObject
        {
            ["seed"] = Options.Seed,
            ["epochs"] = Options.Epochs,
            ["batchSize"] = Options.BatchSize,
            ["learningRate"] = Options.LearningRate,
            ["attackEpsilon"] = Options.Attack.Epsilon,
            ["attackSteps"] = Options.Attack.Steps,
        };
        meta["meanLoss"] = summary.MeanLoss;
        string path = store.Save(epoch, tensors, meta);
        _logger.LogDebug("Checkpoint {Path}", path);
    }

    private Tensor Augment(Tensor images, Generator generator)
    {
        if (Options.Augmentation == Augmentation.None) return images;
        long b = images.shape[0], h = images.shape[2], w = images.shape[3];
        if (Options.Augmentation == Augmentation.CropAndFlip)
        {
            int pad = (int)Math.Max(1, h / 8);
            var padded = nn.functional.pad(images, [pad, pad, pad, pad], PaddingModes.Reflect);
            var offsets = randint(0, 2 * pad + 1, [b, 2], generator: generator).data<long>().ToArray();
            images = stack(Enumerable.Range(0, (int)b).Select(i =>
                padded[i].narrow(1, offsets[2 * i], h).narrow(2, offsets[2 * i + 1], w)).ToArray());
        }
        var flip = rand([b], generator: generator).Lt(0.5).reshape(b, 1, 1, 1);
        return where(flip, images.flip(-1), images);
    }

    // The caller disposes it (a generator holds native state).
    private Generator Generator(int epoch, int step) => new((ulong)Mix(epoch, step));

    // A stable, well-spread 63-bit seed for (seed, epoch, step); independent of the .NET version.
    private long Mix(int epoch, int step)
    {
        ulong z = Options.Seed * 0x9E3779B97F4A7C15UL ^ (ulong)(epoch + 1) * 0xBF58476D1CE4E5B9UL ^ (ulong)(step + 2) * 0x94D049BB133111EBUL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (long)((z ^ (z >> 31)) >> 1);
    }
}
