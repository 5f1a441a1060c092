using TorchSharp.PyBridge;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;

namespace TransferApi.Training.Export;

public enum ExportFormat
{
    Onnx,
    PyTorch,
    TorchSharp,
}

/// <summary>
/// A trained model as a file that runs without TransferApi: ONNX (ONNX Runtime and friends), a PyTorch state
/// dict (<c>torch.load</c>, written with TorchSharp.PyBridge), or TorchSharp's own format (<c>Module.load</c>).
/// All three hold the same network: <see cref="ExportedClassifier"/>.
/// </summary>
public static class ModelExport
{
    public static (string FileName, byte[] Bytes) Write(
        Backbone backbone,
        ModelCheckpoint checkpoint,
        ExportFormat format
    )
    {
        using var model = new ExportedClassifier(backbone, checkpoint);
        switch (format)
        {
            case ExportFormat.Onnx:
                return ("model.onnx", OnnxExport.Write(model));
            case ExportFormat.PyTorch:
                using (var stream = new MemoryStream())
                {
                    model.save_py(stream, leaveOpen: true);
                    return ("model.pt", stream.ToArray());
                }
            default:
                return ("model.dat", ModelCheckpoint.Save(model));
        }
    }
}
