namespace Defeat.Data;

/// <summary>
/// Seeded, disjoint index sets drawn from one labelled set: a few-shot training set of
/// <c>shots</c> images per class and, from what is left, a pool for other uses (the backbone's
/// pre-training in the samples), so that the few-shot images are never seen before prompt tuning.
/// </summary>
/// <param name="FewShot">Indices of the few-shot set, <c>shots</c> per class, ordered by class then draw.</param>
/// <param name="Rest">Every other index, in increasing order.</param>
public sealed record FewShotSplit(IReadOnlyList<long> FewShot, IReadOnlyList<long> Rest)
{
    /// <summary>Draws <paramref name="shots"/> images of each class without replacement.</summary>
    /// <param name="labels">The label of every image.</param>
    /// <param name="classCount">Number of classes; every class must have at least <paramref name="shots"/> images.</param>
    /// <param name="shots">Images per class (16 in the paper).</param>
    /// <param name="seed">Same seed, same split.</param>
    public static FewShotSplit Draw(IReadOnlyList<long> labels, int classCount, int shots, int seed)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shots, 1);

        var byClass = Enumerable.Range(0, classCount).Select(_ => new List<long>()).ToArray();
        for (int i = 0; i < labels.Count; i++)
        {
            long y = labels[i];
            if (y < 0 || y >= classCount)
                throw new ArgumentException($"{nameof(labels)} must be in [0, {classCount - 1}], got {y} at position {i}.", nameof(labels));
            byClass[y].Add(i);
        }

        var random = new Random(seed);
        var fewShot = new List<long>(classCount * shots);
        for (int c = 0; c < classCount; c++)
        {
            var pool = byClass[c];
            if (pool.Count < shots)
                throw new ArgumentException($"Class {c} has {pool.Count} images; expected at least {shots} for {shots}-shot sampling.", nameof(labels));
            // Partial Fisher-Yates: the first `shots` entries become a uniform sample without replacement.
            for (int k = 0; k < shots; k++)
            {
                int j = random.Next(k, pool.Count);
                (pool[k], pool[j]) = (pool[j], pool[k]);
                fewShot.Add(pool[k]);
            }
        }

        var chosen = new HashSet<long>(fewShot);
        var rest = new List<long>(labels.Count - fewShot.Count);
        for (long i = 0; i < labels.Count; i++)
            if (!chosen.Contains(i)) rest.Add(i);
        return new FewShotSplit(fewShot, rest);
    }

    /// <summary>
    /// A class-balanced (stratified) subset of <paramref name="perClass"/> indices per class from
    /// <paramref name="labels"/>, seeded; used for evaluation subsets.
    /// </summary>
    public static IReadOnlyList<long> Stratified(IReadOnlyList<long> labels, int classCount, int perClass, int seed)
        => Draw(labels, classCount, perClass, seed).FewShot;
}
