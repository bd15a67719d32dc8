"""The byte-wise fast path of the raw `planes` split (float32, bfloat16) must give exactly the streams
the format defines: the exponent field, then the bytes of (sign << mantissa_bits | mantissa), low first."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nncodec.codecs import raw
from nncodec.dtypes import DTYPES


def reference_streams(words: np.ndarray, name: str) -> list[np.ndarray]:
    dt = DTYPES[name]
    w = words.astype(np.uint64)
    m = np.uint64(dt.mantissa_bits)
    exp = ((w >> m) & np.uint64((1 << dt.exponent_bits) - 1)).astype(np.uint8)
    rest = ((w >> np.uint64(dt.bits - 1)) << m) | (w & np.uint64((1 << dt.mantissa_bits) - 1))
    planes = [((rest >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8) for k in range((dt.mantissa_bits + 8) // 8)]
    return [exp, *planes]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["float32", "bfloat16"]), data=st.data())
def test_fast_split_matches_the_bit_field_definition_and_joins_back(name: str, data: st.DataObject) -> None:
    dt = DTYPES[name]
    values = data.draw(st.lists(st.integers(0, 2**dt.bits - 1), max_size=64))
    special = [0, 1 << (dt.bits - 1), (1 << dt.bits) - 1, ((1 << dt.exponent_bits) - 1) << dt.mantissa_bits]
    words = np.array(values + special, dtype=np.uint64).astype(dt.storage)
    split, streams = raw._split(words, dt)
    expected = reference_streams(words, name)
    assert split == "float"
    assert [s.dtype for s in streams] == [e.dtype for e in expected]
    assert all(np.array_equal(s, e) for s, e in zip(streams, expected, strict=True))
    joined = raw._join(split, streams, dt)
    assert joined.dtype == dt.storage and joined.tobytes() == words.tobytes()
