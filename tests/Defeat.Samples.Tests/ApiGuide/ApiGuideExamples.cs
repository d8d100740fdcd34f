using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Checkpoints;
using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Clip.Preprocessing;
using Defeat.Clip.Tokenization;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Fusion;
using Defeat.Model;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Shield;
using Defeat.Training;

namespace Defeat.Tests.Samples.ApiGuide;

/// <summary>
/// The examples of docs/api.md, as compiled code. The text between <c>// &lt;example:name&gt;</c> and
/// <c>// &lt;/example:name&gt;</c> is the text of the docs' block tagged <c>&lt;!-- example:name --&gt;</c>
/// (<see cref="ApiGuideDocsTests"/> checks that); <see cref="ApiGuideExampleTests"/> runs every method.
/// Sizes are tiny so that all of them run in seconds; the docs say which numbers the paper uses.
/// </summary>
public static class ApiGuideExamples
{
    /// <summary>The README's example: DEFEAT composed on a CLIP checkpoint, one adversarial training step, a prediction.</summary>
    public static (Tensor Predicted, double Loss, Tensor Context) QuickStart(string checkpointPath, string[] classNames, Tensor images, Tensor labels)
    {
        // <example:quick-start>
        using var clip = ClipLoader.Load(checkpointPath);                  // state dict or safetensors; TorchScript needs AllowTorchScript
        using var model = DefeatModel.Create(clip, classNames);            // prompt learner + PerturbShield + fusion; CLIP frozen
        using var optimizer = new MomentumSgd(model.TrainableParameters(), 0.002, momentum: 0.9, weightDecay: 5e-4);
        var attack = new PgdAttack(PgdOptions.DefeatTraining(4 / 255.0));  // DEFEAT trains on adversarial images

        model.train();
        var adversarial = attack.Perturb(model.AsClassifier(Branch.Fused), images, labels);
        using var output = model.call(adversarial, labels);                // logits of every branch and every loss term
        optimizer.ZeroGrad();
        output.Total.backward();                                           // CE + λ·alignment + μ·text reg. + VQ-VAE loss
        optimizer.Step();

        model.eval();
        var predicted = model.Logits(images, Branch.Fused).argmax(-1);    // [B] class indices
        // </example:quick-start>
        return (predicted, output.Total.item<float>(), model.TrainableStateDict()["prompt_learner.ctx"].detach().clone());
    }

    /// <summary>VectorQuantizer on a batch of grids.</summary>
    public static (Tensor Indices, Tensor Quantized, Tensor Codes, Tensor Codebook, double Loss) VectorQuantizerExample(Tensor z)
    {
        // <example:vector-quantizer>
        using var vq = new VectorQuantizer(new VectorQuantizerOptions { CodebookSize = 32, Dim = 16, Seed = 1 });
        using var q = vq.Quantize(z);                // z [..., 16]: any leading dimensions (official: K = 512, D = 256)
        Tensor indices = q.Indices;                  // [...] int64: the nearest codeword of each vector
        Tensor loss = q.CodebookLoss.Plus(q.CommitmentLoss);   // add to the training loss (ScalarOps: a + b)
        Tensor codes = vq.Lookup(indices);           // [..., 16]: the codewords; q.Quantized has the same values
        // </example:vector-quantizer>
        return (indices.clone(), q.Quantized.detach().clone(), codes.detach(), vq.Codebook.detach().clone(), loss.item<float>());
    }

    /// <summary>PerturbShield on a grid of patch features.</summary>
    public static (Tensor Projected, ShieldOutput Result, Tensor Loss) PerturbShieldExample(Tensor grid, Tensor classFeature)
    {
        // <example:perturb-shield>
        var shield = new PerturbShield(new PerturbShieldOptions
        {
            FeatureDim = 16, GridHeight = 2, GridWidth = 2,    // official: D = 512 on ViT-B/32's 7x7 grid
            HiddenDim = 8, CodebookSize = 32,                  // official: H = 256, K = 512
        });
        var result = shield.Shield(grid);                      // grid [B, 4, 16]: the backbone's patch features
        Tensor projected = result.Projected;                   // [B, 16] = W · VQVAE(grid)
        Tensor loss = result.Loss                              // 0.5·rec + 0.1·(codebook + 0.25·commitment MSE)
            .Plus(shield.AlignmentLoss(classFeature, projected).Times(10));   // λ · mean |norm(I) − norm(Î_proj)|
        // </example:perturb-shield>
        return (projected, result, loss);
    }

    /// <summary>PromptLearner on a backbone's text encoder.</summary>
    public static (PromptLearner Learner, Tensor TextFeatures, Tensor TextRegularization) PromptLearnerExample(ClipModel clip)
    {
        // <example:prompt-learner>
        var learner = new PromptLearner(clip, ["sandal", "coat"], new PromptLearnerOptions { ContextLength = 4, Seed = 1 });
        Tensor t = nn.functional.normalize(learner.EncodeTextFeatures(), dim: -1);   // [classes, D], unit rows
        Tensor textReg = learner.TextRegularizationLoss(t);                          // mean |t − t_hand-written|
        // </example:prompt-learner>
        return (learner, t, textReg);
    }

    /// <summary>LogitFusion: the official average and the paper's probability mixture.</summary>
    public static (Tensor Fused, Tensor Mixture) LogitFusionExample(Tensor cleanLogits, Tensor robustLogits)
    {
        // <example:logit-fusion>
        var fusion = new LogitFusion();                                          // 0.5·clean + 0.5·robust (official)
        var paper = new LogitFusion(new LogitFusionOptions { Mode = FusionMode.ProbabilityAverage });
        Tensor fused = fusion.Fuse(cleanLogits, robustLogits);                   // [B, classes]
        Tensor mixture = paper.Fuse(cleanLogits, robustLogits);                  // log(½·softmax(clean) + ½·softmax(robust))
        // </example:logit-fusion>
        return (fused, mixture);
    }

    /// <summary>PgdAttack on any images-to-logits module.</summary>
    public static Tensor PgdAttackExample(nn.Module<Tensor, Tensor> classifier, Tensor images, Tensor labels)
    {
        // <example:pgd-attack>
        var attack = new PgdAttack(PgdOptions.DefeatTraining(4 / 255.0));   // 3 steps of 2ε/3 from a random start
        Tensor adversarial = attack.Perturb(classifier, images, labels);    // images [B, C, H, W] in [0, 1]
        var evaluation = new PgdAttack(PgdOptions.DefeatEvaluation(4 / 255.0) with { Steps = 10 });   // paper: 100 steps of ε/4
        Tensor strong = evaluation.Perturb(classifier, images, labels);     // |strong − images| ≤ ε, in [0, 1]
        // </example:pgd-attack>
        adversarial.Dispose();
        return strong;
    }

    /// <summary>AutoAttack's standard version on any images-to-logits module, with its report.</summary>
    public static (Tensor Adversarial, AutoAttackReport Report, double Robust) AutoAttackExample(nn.Module<Tensor, Tensor> classifier, Tensor images, Tensor labels)
    {
        // <example:autoattack>
        var autoAttack = new AutoAttack(new AutoAttackOptions
        {
            Epsilon = 4 / 255.0,                        // L-inf ball; Norm = AttackNorm.L2 for the L2 one
            Iterations = 10, SquareQueries = 200,       // published: 100 iterations, 5,000 queries
            Seed = 0,                                   // same seed, same result on CPU
        });
        using AutoAttackResult result = autoAttack.Run(classifier, images, labels);   // APGD-CE, APGD-T, FAB-T, Square
        Console.WriteLine(result.Report);               // clean accuracy, robust accuracy after each attack, warnings
        double robust = result.Report.RobustAccuracy;   // the worst case: no attack fooled the image
        // </example:autoattack>
        return (result.Adversarial.clone(), result.Report, robust);
    }

    /// <summary>DefeatModel built from its parts instead of <see cref="DefeatModel.Create"/>.</summary>
    public static DefeatModel DefeatModelExample(ClipModel clip, string[] classNames)
    {
        // <example:defeat-model>
        var learner = new PromptLearner(clip, classNames, new PromptLearnerOptions { ContextLength = 4 });
        var (h, w) = clip.GridSize;                                       // the backbone's patch grid
        var shield = new PerturbShield(new PerturbShieldOptions
        {
            FeatureDim = clip.FeatureDim, GridHeight = h, GridWidth = w, HiddenDim = 8, CodebookSize = 32,
        });
        var model = new DefeatModel(clip, learner, shield, new LogitFusion(),
            new DefeatModelOptions { AlignmentWeight = 10, TextRegularizationWeight = 20 });   // λ, μ
        // model.parameters(): ctx, the VQ-VAE and W only; the backbone is frozen and not a submodule.
        // </example:defeat-model>
        return model;
    }

    /// <summary>DefeatTrainer: epochs, schedule, attack and checkpoints in one call.</summary>
    public static IReadOnlyList<EpochSummary> DefeatTrainerExample(DefeatModel model, LabeledImages trainSet, string checkpointDirectory)
    {
        // <example:defeat-trainer>
        var trainer = new DefeatTrainer(new DefeatTrainerOptions
        {
            Epochs = 1, WarmupEpochs = 0, BatchSize = 4,      // paper: 10 epochs of 32 images after 1 warm-up epoch
            CheckpointDirectory = checkpointDirectory,        // one resumable checkpoint per epoch
            Seed = 1,                                         // same seed, same weights on CPU
        });
        IReadOnlyList<EpochSummary> history = trainer.Train(model, trainSet);   // model is left in eval mode
        Console.WriteLine($"epoch {history[^1].Epoch}: loss {history[^1].MeanLoss:F3}");
        // </example:defeat-trainer>
        return history;
    }

    /// <summary>RobustnessEvaluator: clean and robust accuracy of a trained model.</summary>
    public static RobustnessReport RobustnessEvaluatorExample(DefeatModel model, LabeledImages testSet)
    {
        // <example:robustness-evaluator>
        model.eval();
        var evaluator = new RobustnessEvaluator(new RobustnessEvaluatorOptions
        {
            Epsilons = [1 / 255.0, 4 / 255.0],
            AttackFactory = eps => new PgdAttack(PgdOptions.DefeatEvaluation(eps) with { Steps = 5 }),   // paper: 100 steps
        });
        var subject = new EvaluationSubject("defeat", images => model.Logits(images, Branch.Fused));
        RobustnessReport report = evaluator.Evaluate(subject, testSet);
        Console.WriteLine($"clean {report.CleanAccuracy:P1}, robust at 4/255 {report.ByEpsilon[1].RobustAccuracy:P1}");
        // </example:robustness-evaluator>
        return report;
    }

    /// <summary>Defeat.Clip: save, load, preprocess, encode, tokenize, zero-shot.</summary>
    public static (Tensor Pixels, ImageFeatures Features, Tensor Ids, IReadOnlyList<int> Tokens, Tensor Classes, Tensor Logits)
        ClipExample(ClipModel clip, string path, Tensor photos)
    {
        // <example:clip>
        ClipLoader.Save(clip, path);                                   // safetensors with OpenAI's keys
        var loaded = ClipLoader.Load(path);                            // the format is detected from the content
        var pixels = ClipPreprocessor.For(loaded).Preprocess(photos);  // resize + centre crop, [B, C, 8, 8] in [0, 1]
        var features = loaded.EncodeImage(pixels);                     // ClassFeature [B, D], GridFeatures [B, N, D]
        Tensor ids = loaded.Tokenize(["a photo of a sandal.", "a photo of a coat."]);   // [2, 77] int64
        IReadOnlyList<int> tokens = ClipTokenizer.Default.Encode("a photo of a cat");  // CLIP's BPE ids
        Tensor classes = loaded.ClassTextFeatures(["sandal", "coat"], ["a photo of a {0}."]);   // [2, D], unit rows
        Tensor logits = loaded.ZeroShotLogits(pixels, classes);        // exp(logit_scale) · cos, [B, 2]
        // </example:clip>
        return (pixels, features, ids, tokens, classes, logits);
    }

    /// <summary>CheckpointStore: save one model's trainable part and load it into another.</summary>
    public static IReadOnlyList<int> CheckpointStoreExample(DefeatModel model, DefeatModel other, string directory)
    {
        // <example:checkpoint-store>
        var store = new CheckpointStore(directory, keep: 2);                 // keeps the newest two epochs
        store.Save(epoch: 3, model.TrainableStateDict(), new JsonObject { ["classes"] = "sandal,coat" });
        using Checkpoint? latest = store.LoadLatest();                       // null when the folder has none
        other.LoadTrainableStateDict(latest!.Tensors);                       // throws, naming every key, on a mismatch
        // </example:checkpoint-store>
        return store.Epochs();
    }
}
