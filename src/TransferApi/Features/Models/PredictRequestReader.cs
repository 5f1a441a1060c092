using TransferApi.Options;
using TransferApi.Services;

namespace TransferApi.Features.Models;

/// <summary>One image of a predict request, named as the client sent it.</summary>
public sealed record PredictImage(string FileName, byte[] Bytes);

/// <summary>
/// Reads the images a predict request carries, multipart <c>file</c> parts or one raw image body, within the
/// upload and serving limits. Refusals are <see cref="DomainException"/>s naming the part at fault.
/// </summary>
public static class PredictRequestReader
{
    /// <summary>Content types of a raw image body on /predict.</summary>
    public static readonly string[] RawImageContentTypes =
    [
        "image/jpeg",
        "image/png",
        "image/bmp",
        "image/gif",
        "image/webp",
    ];

    public static async Task<IReadOnlyList<PredictImage>> ReadAsync(
        HttpRequest request,
        UploadOptions uploads,
        ServingOptions serving,
        CancellationToken cancellation
    )
    {
        var limit = uploads.MaxPredictBytes;
        if (request.HasFormContentType)
            return await ReadFormAsync(request, limit, serving.MaxImagesPerRequest, cancellation);
        if (request.ContentType?.StartsWith("image/", StringComparison.OrdinalIgnoreCase) == true)
        {
            if (request.ContentLength > limit)
                throw TooLarge("body", request.ContentLength.Value, limit);
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, cancellation);
            if (buffer.Length > limit)
                throw TooLarge("body", buffer.Length, limit);
            if (buffer.Length == 0)
                throw new DomainException(ErrorKind.InvalidInput, "No image", "body: the request body is empty.");
            return [new PredictImage("body", buffer.ToArray())];
        }
        throw new DomainException(
            ErrorKind.UnsupportedFormat,
            "Unsupported content type",
            $"Content-Type: '{request.ContentType}' is not accepted; send multipart/form-data with 'file' parts or "
                + "one image as an image/* body."
        );
    }

    private static async Task<IReadOnlyList<PredictImage>> ReadFormAsync(
        HttpRequest request,
        long limit,
        int maxImages,
        CancellationToken cancellation
    )
    {
        var form = await request.ReadFormAsync(cancellation);
        var files = form.Files.GetFiles("file");
        if (files.Count == 0)
            throw new DomainException(
                ErrorKind.InvalidInput,
                "No image",
                "file: the form has no 'file' part; send each image as a part named 'file'."
            );
        if (files.Count > maxImages)
            throw new DomainException(
                ErrorKind.LimitExceeded,
                "Too many images",
                $"file: {files.Count} images in one request; the limit is {maxImages}."
            );
        var images = new List<PredictImage>(files.Count);
        foreach (var file in files)
        {
            if (file.Length > limit)
                throw TooLarge(file.FileName, file.Length, limit);
            using var buffer = new MemoryStream((int)file.Length);
            await file.CopyToAsync(buffer, cancellation);
            images.Add(new PredictImage(file.FileName, buffer.ToArray()));
        }
        return images;
    }

    private static DomainException TooLarge(string name, long bytes, long limit) =>
        new(
            ErrorKind.LimitExceeded,
            "Image too large",
            $"file: '{name}' is {bytes:N0} bytes; the limit is {limit:N0}."
        );
}
