"""Resource limits checked before anything read from a file is allocated: the one source of truth.

spec/FORMAT.md §11 prints `limits_table()` verbatim (a test holds the two together), and the writer
refuses to produce a file that a reader with the default limits would refuse.

Why these defaults: they admit any released model and stop bombs. The largest tensor of a released
model (a 128k x 16k embedding) has 2.1 G elements: 2^34 is 8x that. A 2 T-parameter model in bf16
is 4 TB: 2^42 bytes. Decoding is further held to this machine's memory (`nncodec.load_file` refuses
a file whose tensors add up to more than the physical memory). The header bounds keep the cost of
*reading the header* in proportion to the file: a zstd header may expand at most 16x (a realistic
header compresses 5-10x; a writer that would exceed it stores JSON instead), and every declared
tensor or section must be backed by at least 32 bytes of the file, each alias by 8 (their JSON entries
take more), so a 1 MB file declares at most 31 k tensors and 31 k sections, or 125 k aliases,
whatever it holds. A VAE decoder (spec §19) may be far wider and deeper than any published one (the
paper's: latent 64 -> hidden -> 2,048, two linear layers), but its work is bounded: 2^44 multiply-adds
are hours of decoding, the point past which a file is an attack, not a model. A chunked tensor
(spec §23) may have at most 2^20 chunks: 2^34 float64 elements (the largest tensor allowed,
128 GiB) in chunks of 128 KiB; nncodec writes chunks of 4 MiB. The model of a coded dataset
(spec §21.5) is built from a spec in the header and then trained or loaded: 2^22 parameters (16 MiB
of float32) are ample for a model whose bytes are part of a description length, and the count comes
from the spec's widths, so it is checked before anything is allocated. A context-mixing model (§21.7) is tables, not
parameters, 8 bytes a slot: 2 GiB bounds what a header can make a reader allocate and still admits
the largest useful spec (nine contexts of 2^24 slots: 1.1 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import LimitExceededError


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 2**20
    max_header_expansion: int = 16
    max_tensors: int = 1_000_000
    max_sections: int = 4_000_000
    min_file_bytes_per_entry: int = 32
    min_file_bytes_per_alias: int = 8
    max_ndim: int = 16
    max_elements_per_tensor: int = 2**34
    max_total_decoded_bytes: int = 2**42
    max_metadata_bytes: int = 16 * 2**20
    max_json_depth: int = 32
    max_nesting_depth: int = 1
    max_alphabet: int = 2**20
    # VAE decoders (spec §19): sizes from a header, checked before a weight or an output is allocated
    max_vae_chunk: int = 2**20  # values per latent vector (the paper: 2,048)
    max_vae_latent: int = 2**16  # numbers per latent vector (the paper: 64 or 128)
    max_vae_width: int = 2**16  # units of one decoder layer
    max_vae_layers: int = 64  # layers of one decoder (the paper's has 2 linear ones)
    max_vae_work: int = 2**44  # chunks x multiply-adds per chunk: one group's decoding work
    max_dataset_model_parameters: int = 2**22  # lstm, mlp, cnn, gauss (spec §21.5)
    max_dataset_cm_bytes: int = 2**31  # tables of a context-mixing dataset model (spec §21.7)
    max_dataset_work_per_byte: int = 2**33  # multiply-adds of decoding a dataset per coded byte (§21.6)
    max_chunks_per_tensor: int = 2**20  # a 2**34-element float64 tensor in chunks of 128 KiB
    max_decode_memory_bytes: int = 2**36  # modelled peak of decoding one tensor (decode_memory.py)

    def check(self, what: str, value: int, limit: int) -> None:
        """Raise LimitExceededError when value > limit, naming the limit the user can raise."""
        if value > limit:
            raise LimitExceededError(f"{what} is {value}, over the limit of {limit}")

    def entry_bytes(self, entries: int, aliases: int = 0) -> int:
        """The fewest file bytes that may declare `entries` tensors or sections and `aliases` aliases."""
        return entries * self.min_file_bytes_per_entry + aliases * self.min_file_bytes_per_alias

    def check_entries(self, what: str, entries: int, file_size: int, aliases: int = 0) -> None:
        """Every declared tensor, alias or section must be backed by bytes of the file, so that the
        cost of reading a header stays in proportion to the file's size."""
        if self.entry_bytes(entries, aliases) > file_size:
            raise LimitExceededError(
                f"{entries + aliases} {what} declared in a {file_size}-byte file: each needs at least "
                f"{self.min_file_bytes_per_entry} bytes of the file, an alias {self.min_file_bytes_per_alias} "
                "(min_file_bytes_per_entry, min_file_bytes_per_alias)")


DEFAULT_LIMITS = Limits()

# What each limit bounds, for the spec's table (spec/FORMAT.md §11).
CHECKED_AGAINST = {
    "max_header_bytes": "stored header length, and a zstd header's declared size",
    "max_header_expansion": "a zstd header's declared size ÷ its stored size",
    "max_json_depth": "JSON nesting depth",
    "max_sections": "number of section entries",
    "max_tensors": "number of tensor entries (aliases included)",
    "min_file_bytes_per_entry": "`file_length` ÷ number of section entries; (`file_length` − aliases × the next) ÷ other tensor entries",
    "min_file_bytes_per_alias": "see the previous row: the file bytes each alias entry needs",
    "max_ndim": "dimensions of a shape",
    "max_elements_per_tensor": "`numel` of one tensor, and the product of its non-zero dimensions",
    "max_total_decoded_bytes": "Σ `numel × word size` over raw and quantized entries",
    "max_metadata_bytes": "Σ UTF-8 bytes of metadata keys and values",
    "max_alphabet": "count-table alphabet size (mask `ans` tables: 2)",
    "max_vae_chunk": "a VAE decoder's `chunk` (§19.1)",
    "max_vae_latent": "a VAE decoder's `latent` (§19.1)",
    "max_vae_width": "units (`out`) of one VAE decoder layer (§19.1)",
    "max_vae_layers": "layers of one VAE decoder; its `tensors` may hold twice as many (§19.1)",
    "max_vae_work": "a VAE group's `chunks × macs`, its decoder's multiply-adds (§19.1)",
    "max_dataset_model_parameters": "parameters of a coded dataset's model (§21.5), counted from its spec before it is built",
    "max_dataset_cm_bytes": "memory of a `cm` dataset model's tables (§21.7), computed from its spec before allocation",
    "max_dataset_work_per_byte": "estimated multiply-adds of decoding a dataset section (training replayed) ÷ (its bytes + 64) (§21.6)",
    "max_chunks_per_tensor": "chunks of one chunked raw tensor (§23), declared and implied by `n`",
}

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _show(name: str, value: int) -> str:
    if name.endswith("_bytes") and value % 2**20 == 0 and value < 2**30:
        return f"{value >> 20} MiB"
    if value >= 2**20 and value & (value - 1) == 0:
        return "2" + str(value.bit_length() - 1).translate(_SUPERSCRIPT)
    return f"{value:,}"


def limits_table() -> str:
    """The markdown table of spec/FORMAT.md §11, generated from the defaults above."""
    by_name = {f.name: f.default for f in fields(Limits)}
    rows = ["| limit | default | checked against |", "|---|---|---|"]
    rows += [f"| `{name}` | {_show(name, by_name[name])} | {what} |" for name, what in CHECKED_AGAINST.items()]
    return "\n".join(rows)
