namespace TransferApi.Training.Tests;

public class DataSplitterTests
{
    private static List<LabeledImage> Images(params (string Label, int Count, DataSplit Split)[] groups) =>
        groups
            .SelectMany(g => Enumerable.Range(0, g.Count).Select(_ => new LabeledImage(g.Label, g.Split, [])))
            .ToList();

    [Fact]
    public void Split_is_stratified_and_the_same_for_the_same_seed()
    {
        var images = Images(("a", 50, DataSplit.Unassigned), ("b", 10, DataSplit.Unassigned));
        var (train, val) = DataSplitter.Split(images, 0.2, 7);
        Assert.Equal(10, val.Count(i => images[i].Label == "a"));
        Assert.Equal(2, val.Count(i => images[i].Label == "b"));
        Assert.Empty(train.Intersect(val));
        Assert.Equal(60, train.Length + val.Length);
        Assert.Equal((train, val), DataSplitter.Split(images, 0.2, 7), new SplitComparer());
        Assert.NotEqual(val, DataSplitter.Split(images, 0.2, 8).Validation);
    }

    [Fact]
    public void Split_honours_fixed_validation_images_and_leaves_test_images_out()
    {
        var images = Images(
            ("a", 5, DataSplit.Train),
            ("a", 2, DataSplit.Validation),
            ("b", 4, DataSplit.Train),
            ("b", 3, DataSplit.Validation),
            ("b", 2, DataSplit.Test)
        );
        var (train, val) = DataSplitter.Split(images, 0.5, 1);
        Assert.All(train, i => Assert.Equal(DataSplit.Train, images[i].Split));
        Assert.All(val, i => Assert.Equal(DataSplit.Validation, images[i].Split));
        Assert.Equal(9, train.Length);
        Assert.Equal(5, val.Length);
    }

    [Fact]
    public void Every_class_keeps_a_training_image()
    {
        var images = Images(("a", 2, DataSplit.Unassigned), ("b", 1, DataSplit.Unassigned));
        var (train, val) = DataSplitter.Split(images, 0.9, 3);
        Assert.Contains(train, i => images[i].Label == "a");
        Assert.Contains(train, i => images[i].Label == "b");
        Assert.Single(val);
    }

    private sealed class SplitComparer : IEqualityComparer<(int[], int[])>
    {
        public bool Equals((int[], int[]) x, (int[], int[]) y) =>
            x.Item1.SequenceEqual(y.Item1) && x.Item2.SequenceEqual(y.Item2);

        public int GetHashCode((int[], int[]) obj) => obj.Item1.Length;
    }
}

public class DataSplitterAssignTests
{
    [Fact]
    public void Three_way_assignment_keeps_class_proportions_and_is_reproducible()
    {
        var labels = Enumerable.Repeat("a", 100).Concat(Enumerable.Repeat("b", 20)).ToList();
        var splits = DataSplitter.Assign(labels, new SplitFractions(0.2, 0.1), 5);
        int Count(string label, DataSplit split) => labels.Where((l, i) => l == label && splits[i] == split).Count();
        Assert.Equal(
            (20, 10, 70),
            (Count("a", DataSplit.Validation), Count("a", DataSplit.Test), Count("a", DataSplit.Train))
        );
        Assert.Equal(
            (4, 2, 14),
            (Count("b", DataSplit.Validation), Count("b", DataSplit.Test), Count("b", DataSplit.Train))
        );
        Assert.Equal(splits, DataSplitter.Assign(labels, new SplitFractions(0.2, 0.1), 5));
        Assert.NotEqual(splits, DataSplitter.Assign(labels, new SplitFractions(0.2, 0.1), 6));
    }

    [Fact]
    public void A_tiny_class_keeps_a_training_image()
    {
        var splits = DataSplitter.Assign(["a", "a", "b"], new SplitFractions(0.5, 0.3), 1);
        Assert.Contains(DataSplit.Train, splits.Take(2));
        Assert.Equal(DataSplit.Train, splits[2]);
    }

    [Theory]
    [InlineData(-0.1, 0)]
    [InlineData(1.0, 0)]
    [InlineData(0.5, 0.5)]
    public void Impossible_fractions_are_refused(double validation, double test) =>
        Assert.NotNull(new SplitFractions(validation, test).Problem);
}
