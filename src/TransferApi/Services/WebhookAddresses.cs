using System.Net;
using System.Net.Sockets;

namespace TransferApi.Services;

/// <summary>
/// Which addresses a webhook may reach. Only public unicast ones by default: a key holder must not make the
/// service call its own network (loopback, private ranges, link-local and the cloud metadata address 169.254.169.254,
/// carrier-grade NAT, multicast). Checked when a webhook is created and again when each delivery connects, since a
/// name can resolve elsewhere later.
/// </summary>
public static class WebhookAddresses
{
    private static readonly IPNetwork[] NonPublic =
    [
        IPNetwork.Parse("0.0.0.0/8"), // "this network", unspecified
        IPNetwork.Parse("10.0.0.0/8"), // private
        IPNetwork.Parse("100.64.0.0/10"), // carrier-grade NAT
        IPNetwork.Parse("127.0.0.0/8"), // loopback
        IPNetwork.Parse("169.254.0.0/16"), // link-local, cloud metadata
        IPNetwork.Parse("172.16.0.0/12"), // private
        IPNetwork.Parse("192.0.0.0/24"), // IETF protocol assignments
        IPNetwork.Parse("192.0.2.0/24"), // documentation
        IPNetwork.Parse("192.168.0.0/16"), // private
        IPNetwork.Parse("198.18.0.0/15"), // benchmarking
        IPNetwork.Parse("198.51.100.0/24"), // documentation
        IPNetwork.Parse("203.0.113.0/24"), // documentation
        IPNetwork.Parse("224.0.0.0/4"), // multicast
        IPNetwork.Parse("240.0.0.0/4"), // reserved, broadcast
        IPNetwork.Parse("::/128"), // unspecified
        IPNetwork.Parse("::1/128"), // loopback
        IPNetwork.Parse("100::/64"), // discard
        IPNetwork.Parse("2001:db8::/32"), // documentation
        IPNetwork.Parse("fc00::/7"), // unique local (AWS's metadata fd00:ec2::254 too)
        IPNetwork.Parse("fe80::/10"), // link-local
        IPNetwork.Parse("ff00::/8"), // multicast
    ];

    private static readonly IPNetwork Nat64 = IPNetwork.Parse("64:ff9b::/96");
    private static readonly IPNetwork Ipv4Compatible = IPNetwork.Parse("::/96");

    /// <summary>True for an address a delivery may connect to without Webhooks:AllowPrivateNetworks.</summary>
    public static bool IsPublic(IPAddress address)
    {
        // IPv4 hidden in IPv6 reaches the IPv4 address: judge that one.
        if (address.IsIPv4MappedToIPv6)
            address = address.MapToIPv4();
        else if (Embedded(address) is { } inner)
            return IsPublic(inner);
        if (address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            return false;
        return !NonPublic.Any(n => n.Contains(address));
    }

    /// <summary>The IPv4 address inside NAT64 (64:ff9b::/96) and IPv4-compatible (::/96) IPv6 addresses.</summary>
    private static IPAddress? Embedded(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
            return null;
        // :: and ::1 (IPv4-compatible form) land in 0.0.0.0/8, which is refused as well.
        return Nat64.Contains(address) || Ipv4Compatible.Contains(address)
            ? new IPAddress(address.GetAddressBytes().AsSpan(12))
            : null;
    }

    /// <summary>
    /// Why <paramref name="url"/> cannot be a webhook, or null when it can: an absolute http(s) URL without user
    /// information, whose host resolves only to addresses deliveries may reach.
    /// </summary>
    public static async Task<string?> ProblemAsync(
        string? url,
        bool allowPrivateNetworks,
        CancellationToken cancellation
    )
    {
        if (string.IsNullOrWhiteSpace(url))
            return "url is required.";
        if (url.Length > Persistence.Webhook.MaxUrlLength)
            return $"url is longer than {Persistence.Webhook.MaxUrlLength} characters.";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
            return "url must be an absolute URL.";
        if (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp)
            return $"url must use http or https, not {uri.Scheme}.";
        if (uri.UserInfo.Length > 0)
            return "url must not hold a user name or password; authenticate the sender by its signature.";
        if (allowPrivateNetworks)
            return null;
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(uri.IdnHost, out var literal)
                ? [literal]
                : await Dns.GetHostAddressesAsync(uri.IdnHost, cancellation);
        }
        catch (SocketException)
        {
            return $"url's host {uri.Host} does not resolve.";
        }
        if (addresses.Length == 0)
            return $"url's host {uri.Host} does not resolve.";
        if (addresses.FirstOrDefault(a => !IsPublic(a)) is { } refused)
            return (
                    IPAddress.TryParse(uri.IdnHost, out _)
                        ? $"url's host {refused} is"
                        : $"url's host {uri.Host} resolves to {refused},"
                )
                + " a loopback, private, link-local or otherwise non-public address; webhooks reach public addresses "
                + "only (Webhooks:AllowPrivateNetworks lifts this).";
        return null;
    }

    /// <summary>
    /// Connects a delivery to the first address of its host that it may reach, so a name that resolved to a public
    /// address when the webhook was created cannot lead a delivery into the private network now (DNS rebinding).
    /// </summary>
    public static async ValueTask<Stream> ConnectAsync(
        DnsEndPoint endpoint,
        bool allowPrivateNetworks,
        CancellationToken cancellation
    )
    {
        var addresses = IPAddress.TryParse(endpoint.Host, out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(endpoint.Host, cancellation);
        var allowed = addresses.Where(a => allowPrivateNetworks || IsPublic(a)).ToArray();
        if (allowed.Length == 0)
            throw new HttpRequestException(
                $"{endpoint.Host} resolves to no public address "
                    + $"({string.Join(", ", (IEnumerable<IPAddress>)addresses)})."
            );
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, endpoint.Port, cancellation);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
