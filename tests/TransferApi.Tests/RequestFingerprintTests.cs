using System.Text;
using Microsoft.AspNetCore.Http;
using TransferApi.Http;

namespace TransferApi.Tests;

/// <summary>What makes two uploads "the same request" for Idempotency-Key, however the body arrives in reads.</summary>
public class RequestFingerprintTests
{
    private static string Multipart(string boundary, string name) =>
        $"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
        + $"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\n\r\nPK\u0003\u0004"
        + $"{new string('z', 300)}\r\n--{boundary}--\r\n";

    private static byte[] Fingerprint(string boundary, string body, int readSize, string path = "/api/datasets")
    {
        var request = new DefaultHttpContext().Request;
        request.Method = "POST";
        request.Path = path;
        request.ContentType = $"multipart/form-data; boundary=\"{boundary}\"";
        using var fingerprint = new RequestFingerprint(request);
        var bytes = Encoding.UTF8.GetBytes(body);
        foreach (var chunk in bytes.Chunk(readSize))
            fingerprint.AppendBody(chunk);
        return fingerprint.Finish();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(37)]
    [InlineData(4096)]
    public void The_same_parts_under_another_boundary_are_the_same_request_in_reads_of_any_size(int readSize)
    {
        var (a, b) = ("a1b2c3d4-0000-boundary", "other-boundary-ffff-9999");
        var first = Fingerprint(a, Multipart(a, "retried"), 4096);
        Assert.Equal(first, Fingerprint(b, Multipart(b, "retried"), readSize));
        Assert.NotEqual(first, Fingerprint(b, Multipart(b, "another"), readSize));
        Assert.NotEqual(first, Fingerprint(a, Multipart(a, "retried"), readSize, "/api/training-jobs"));
    }
}
