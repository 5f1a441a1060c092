using System.Net;
using System.Xml.Linq;
using Microsoft.Extensions.DependencyInjection;
using TransferApi.Options;
using TransferApi.Services;

namespace TransferApi.Tests;

/// <summary>
/// Where deliveries may go without Webhooks:AllowPrivateNetworks (the test service sets it to reach its loopback
/// receivers, so the refusals are checked here): public unicast addresses only, IPv4 hidden in IPv6 judged as IPv4.
/// </summary>
public class WebhookAddressTests
{
    [Theory]
    [InlineData("127.0.0.1")] // loopback
    [InlineData("127.255.0.9")]
    [InlineData("10.1.2.3")] // private
    [InlineData("172.16.0.1")]
    [InlineData("172.31.255.254")]
    [InlineData("192.168.1.1")]
    [InlineData("169.254.169.254")] // link-local: cloud metadata
    [InlineData("100.64.0.1")] // carrier-grade NAT
    [InlineData("0.0.0.0")] // unspecified
    [InlineData("224.0.0.1")] // multicast
    [InlineData("255.255.255.255")] // broadcast
    [InlineData("::1")]
    [InlineData("::")]
    [InlineData("fe80::1")] // link-local
    [InlineData("fd00:ec2::254")] // unique local: AWS's IPv6 metadata
    [InlineData("fc00::5")]
    [InlineData("ff02::1")] // multicast
    [InlineData("::ffff:127.0.0.1")] // IPv4-mapped
    [InlineData("::ffff:10.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("64:ff9b::a00:1")] // NAT64 of 10.0.0.1
    [InlineData("::7f00:1")] // IPv4-compatible 127.0.0.1
    public void Non_public_addresses_are_refused(string address) =>
        Assert.False(WebhookAddresses.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("93.184.215.14")]
    [InlineData("172.32.0.1")] // just outside 172.16/12
    [InlineData("100.128.0.1")] // just outside 100.64/10
    [InlineData("2606:4700:4700::1111")]
    [InlineData("::ffff:8.8.8.8")]
    [InlineData("64:ff9b::808:808")] // NAT64 of 8.8.8.8
    public void Public_addresses_are_allowed(string address) =>
        Assert.True(WebhookAddresses.IsPublic(IPAddress.Parse(address)));

    [Theory]
    [InlineData("http://127.0.0.1:8080/hook", "127.0.0.1")]
    [InlineData("http://[::1]/hook", "::1")]
    [InlineData("https://169.254.169.254/latest/meta-data/", "169.254.169.254")]
    [InlineData("http://[::ffff:192.168.0.1]/", "192.168.0.1")]
    [InlineData("http://localhost:5080/", "localhost")]
    public async Task A_url_on_a_non_public_address_is_refused_naming_the_host(string url, string named)
    {
        var problem = await WebhookAddresses.ProblemAsync(url, allowPrivateNetworks: false, CancellationToken.None);
        Assert.NotNull(problem);
        Assert.StartsWith("url's host", problem, StringComparison.Ordinal);
        Assert.Contains(named, problem, StringComparison.Ordinal);
        Assert.Null(await WebhookAddresses.ProblemAsync(url, allowPrivateNetworks: true, CancellationToken.None));
    }

    [Theory]
    [InlineData("ftp://8.8.8.8/x", "http or https")]
    [InlineData("relative/path", "absolute")]
    [InlineData("https://user:secret@8.8.8.8/", "user name or password")]
    [InlineData("https://8.8.8.8/hook", null)]
    public async Task Only_absolute_http_urls_without_credentials_are_accepted(string url, string? complaint)
    {
        var problem = await WebhookAddresses.ProblemAsync(url, allowPrivateNetworks: false, CancellationToken.None);
        if (complaint is null)
            Assert.Null(problem);
        else
            Assert.Contains(complaint, problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_delivery_is_not_connected_to_a_non_public_address_even_when_its_name_resolves_there()
    {
        // "localhost" stands for a public name that now resolves into the private network (DNS rebinding).
        var refused = await Assert.ThrowsAsync<HttpRequestException>(async () =>
            await WebhookAddresses.ConnectAsync(new DnsEndPoint("localhost", 9), false, CancellationToken.None)
        );
        Assert.Contains("no public address", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_key_ring_opens_only_with_the_key_that_sealed_it()
    {
        var (sealing, other) = (new byte[32], new byte[32]);
        Random.Shared.NextBytes(sealing);
        Random.Shared.NextBytes(other);
        var key = new XElement("key", new XElement("masterKey", "c2VjcmV0IGtleSBtYXRlcmlhbA=="));
        var sealedKey = new KeyRingEncryptor(sealing).Encrypt(key);
        Assert.Equal(typeof(KeyRingDecryptor), sealedKey.DecryptorType);
        Assert.DoesNotContain("c2VjcmV0", sealedKey.EncryptedElement.ToString(), StringComparison.Ordinal);

        KeyRingDecryptor With(byte[] configured) =>
            new(
                new Microsoft.Extensions.DependencyInjection.ServiceCollection()
                    .AddSingleton(
                        Microsoft.Extensions.Options.Options.Create(
                            new SecretsOptions { KeyEncryptionKey = Convert.ToBase64String(configured) }
                        )
                    )
                    .BuildServiceProvider()
            );
        Assert.Equal(key.ToString(), With(sealing).Decrypt(sealedKey.EncryptedElement).ToString());
        var wrong = Assert.Throws<InvalidOperationException>(() => With(other).Decrypt(sealedKey.EncryptedElement));
        Assert.Contains("another Secrets:KeyEncryptionKey", wrong.Message, StringComparison.Ordinal);
    }
}
