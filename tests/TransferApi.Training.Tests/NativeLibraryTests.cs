using static TorchSharp.torch;

namespace TransferApi.Training.Tests;

public class NativeLibraryTests
{
    [Fact]
    public void TorchSharp_native_library_loads_and_computes()
    {
        using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var product = a.matmul(a.t());
        Assert.Equal(new[] { 5f, 14f, 14f, 50f }, product.data<float>().ToArray());
        // TorchSharp copies ~500 MB of libtorch into ./cpu when its first load fails: it must not have needed to.
        Assert.False(
            Directory.Exists(Path.Combine(AppContext.BaseDirectory, "cpu")),
            "TorchSharp fell back to copying libtorch"
        );
    }
}
