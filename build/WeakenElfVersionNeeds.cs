using System;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

// Marks the named symbol-version requirements of ELF64 little-endian shared libraries weak, so the dynamic
// loader warns instead of refusing when the system library lacks that version. Idempotent.
public class WeakenElfVersionNeeds : Task
{
    [Required]
    public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

    [Required]
    public string Versions { get; set; } = "";

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    static readonly string[] LibstdcxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6",
        "/usr/lib/libstdc++.so.6",
    };

    public override bool Execute()
    {
        var wanted = Versions
            .Split(new[] { ';', ',' }, StringSplitOptions.RemoveEmptyEntries)
            .Select(v => v.Trim())
            .ToList();
        var libstdcxx = LibstdcxxCandidates.FirstOrDefault(File.Exists);
        if (libstdcxx != null)
        {
            var system = File.ReadAllBytes(libstdcxx);
            wanted = wanted.Where(v => IndexOf(system, Encoding.ASCII.GetBytes(v + "\0")) < 0).ToList();
        }
        if (wanted.Count == 0)
        {
            Log.LogMessage(
                MessageImportance.Low,
                "System libstdc++ ({0}) has every required version; LibTorchSharp left as shipped.",
                libstdcxx
            );
            return true;
        }
        foreach (var item in Files)
        {
            var path = item.ItemSpec;
            var weakened = Weaken(path, wanted);
            if (weakened > 0)
                Log.LogMessage(MessageImportance.Normal, "Marked {0} version need(s) weak in {1}", weakened, path);
        }
        return !Log.HasLoggedErrors;
    }

    int Weaken(string path, System.Collections.Generic.List<string> versions)
    {
        var elf = File.ReadAllBytes(path);
        if (
            elf.Length < 64
            || elf[0] != 0x7f
            || elf[1] != (byte)'E'
            || elf[2] != (byte)'L'
            || elf[3] != (byte)'F'
            || elf[4] != 2
            || elf[5] != 1
        )
        {
            Log.LogWarning("{0} is not a 64-bit little-endian ELF file; not patched.", path);
            return 0;
        }
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        int changed = 0,
            alreadyWeak = 0;
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed)
                continue;
            int offset = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
            int strtabIndex = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            int entries = (int)BitConverter.ToUInt32(elf, sh + 0x2C);
            int strtab = checked((int)BitConverter.ToUInt64(elf, checked((int)shoff + strtabIndex * shentsize) + 0x18));

            int need = offset;
            for (int n = 0; n < entries; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, need + 2);
                int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    var name = ReadString(elf, strtab + (int)BitConverter.ToUInt32(elf, aux + 8));
                    if (versions.Contains(name))
                    {
                        ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                        if ((flags & VerFlgWeak) == 0)
                        {
                            BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, aux + 4);
                            changed++;
                        }
                        else
                            alreadyWeak++;
                    }
                    aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                }
                need += (int)BitConverter.ToUInt32(elf, need + 12);
            }
        }
        if (changed > 0)
        {
            // Write beside and rename so a concurrently loading process never sees a half-written library.
            var temp = path + ".patching";
            File.WriteAllBytes(temp, elf);
            File.Replace(temp, path, null);
        }
        return changed;
    }

    static string ReadString(byte[] bytes, int start)
    {
        int end = start;
        while (end < bytes.Length && bytes[end] != 0)
            end++;
        return Encoding.ASCII.GetString(bytes, start, end - start);
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j])
                j++;
            if (j == needle.Length)
                return i;
        }
        return -1;
    }
}
