from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.demo_data import generate_demo_pairs
from annotation.importers import (
    ATTRIBUTE_NAMES,
    ImportFormatError,
    ImportLimits,
    content_hash,
    iter_pair_records,
    parse_all,
)

HH_RLHF_TEST = (
    Path(__file__).resolve().parents[2].parent / "shared/data/hh-rlhf-harmless-base/test.jsonl.gz"
)
MiB = 1024 * 1024


def native_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "conversation": [{"role": "user", "content": "What is 2 + 2?"}],
        "response_a": "4",
        "response_b": "5",
    }
    row.update(overrides)
    return row


def jsonl_bytes(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def write(path: Path, data: bytes, *, gzipped: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    columns = [
        "external_id",
        "source",
        "conversation",
        "response_a",
        "response_b",
        *ATTRIBUTE_NAMES,
        "silver_preference",
    ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {key: row.get(key, "") for key in columns}
        flat["conversation"] = json.dumps(row["conversation"])
        flat.update(row.get("attributes", {}))
        writer.writerow(flat)
    return out.getvalue().encode()


def parquet_bytes(rows: list[dict[str, Any]], *, row_group_size: int = 7) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=row_group_size)
    return out.getvalue()


def encode(file_format: str, rows: list[dict[str, Any]]) -> bytes:
    if file_format == "jsonl":
        return jsonl_bytes(rows)
    if file_format == "json":
        return json.dumps(rows, indent=2).encode()
    if file_format == "json-wrapped":
        return json.dumps({"version": 1, "pairs": rows}).encode()
    if file_format == "csv":
        return csv_bytes(rows)
    return parquet_bytes(rows)


EXTENSIONS = {
    "jsonl": ".jsonl",
    "json": ".json",
    "json-wrapped": ".json",
    "csv": ".csv",
    "parquet": ".parquet",
}


def comparable(record: Any) -> dict[str, Any]:
    return {
        "conversation": list(record.conversation),
        "response_a": record.response_a,
        "response_b": record.response_b,
        "external_id": record.external_id,
        "source": record.source,
        "attributes": record.attributes,
        "silver_preference": record.silver_preference,
    }


def expected_from(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: row[key]
        for key in (
            "conversation",
            "response_a",
            "response_b",
            "external_id",
            "source",
            "attributes",
            "silver_preference",
        )
    }


# Formats


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("file_format", list(EXTENSIONS))
def test_it_reads_the_same_pairs_from_every_format(
    tmp_path: Path, file_format: str, gzipped: bool
) -> None:
    rows = generate_demo_pairs(20, seed=3)
    name = "pairs" + EXTENSIONS[file_format] + (".gz" if gzipped else "")
    path = write(tmp_path / name, encode(file_format, rows), gzipped=gzipped)

    records = parse_all(path)

    assert [comparable(record) for record in records] == [expected_from(row) for row in rows]
    assert {record.raw_format for record in records} == {"native"}
    for record in records:
        assert record.content_hash == content_hash(
            record.conversation, record.response_a, record.response_b
        )


@pytest.mark.parametrize("file_format", list(EXTENSIONS))
def test_it_numbers_records_by_their_place_in_the_file(tmp_path: Path, file_format: str) -> None:
    rows = [
        native_row(
            response_b=f"answer {n}",
            external_id=f"id-{n}",
            source="t",
            attributes={"task_category": "math"},
            silver_preference=None,
        )
        for n in range(9)
    ]
    path = write(tmp_path / ("pairs" + EXTENSIONS[file_format]), encode(file_format, rows))

    lines = [record.line for record in parse_all(path)]

    # CSV counts the header line; JSON counts array items; Parquet counts rows.
    first = 2 if file_format == "csv" else 1
    assert lines == list(range(first, first + 9))


def test_jsonl_lines_count_blank_lines(tmp_path: Path) -> None:
    data = (
        b"\n"
        + jsonl_bytes([native_row()])
        + b"   \n\n"
        + jsonl_bytes([native_row(response_b="22")])
    )
    records = parse_all(write(tmp_path / "pairs.jsonl", data))
    assert [record.line for record in records] == [2, 5]


def test_csv_records_carry_the_line_where_they_start(tmp_path: Path) -> None:
    data = (
        b"prompt,response_a,response_b\n"
        b'"Write a poem","Roses\nare red","Violets\nare\nblue"\n'
        b"Say hi,hi,hello\n"
    )
    records = parse_all(write(tmp_path / "pairs.csv", data))
    # The first record spans lines 2 to 5.
    assert [record.line for record in records] == [2, 6]
    assert records[0].response_b == "Violets\nare\nblue"


def test_a_json_array_larger_than_the_read_window_streams_intact(tmp_path: Path) -> None:
    # Items straddle the 1 MiB read window, and one item alone is larger than it.
    rows = generate_demo_pairs(4000, seed=5)
    rows[1234]["response_a"] = "long " * 400_000
    path = write(tmp_path / "pairs.json", json.dumps(rows).encode())

    records = parse_all(path, limits=ImportLimits(max_field_chars=3_000_000))

    assert path.stat().st_size > 3 * MiB
    assert [record.external_id for record in records] == [row["external_id"] for row in rows]
    assert records[1234].response_a == rows[1234]["response_a"]


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.csv", "pairs.json"])
def test_a_utf8_byte_order_mark_is_ignored(tmp_path: Path, name: str) -> None:
    rows = [native_row(response_a="Grüße")]
    data = csv_bytes(rows) if name.endswith(".csv") else encode(name.split(".")[1], rows)
    records = parse_all(write(tmp_path / name, b"\xef\xbb\xbf" + data))
    assert [record.response_a for record in records] == ["Grüße"]


def test_it_detects_gzip_and_parquet_by_magic_bytes_not_names(tmp_path: Path) -> None:
    rows = generate_demo_pairs(5)
    misnamed_gzip = write(tmp_path / "pairs.jsonl", jsonl_bytes(rows), gzipped=True)
    unnamed_parquet = write(tmp_path / "upload.bin", parquet_bytes(rows))

    assert len(parse_all(misnamed_gzip)) == 5
    assert len(parse_all(unnamed_parquet)) == 5


@pytest.mark.parametrize(
    "data, expected_format",
    [
        (jsonl_bytes([native_row()]), "jsonl"),
        (json.dumps([native_row()], indent=1).encode(), "json"),
        (json.dumps({"data": [native_row()]}).encode(), "json"),
        (json.dumps({"meta": {"n": 1}, "data": [native_row()]}).encode() + b"\n", "json"),
        (b"prompt,response_a,response_b\nhi,a,b\n", "csv"),
    ],
)
def test_it_sniffs_the_format_of_an_unnamed_stream(data: bytes, expected_format: str) -> None:
    records = parse_all(io.BytesIO(data))
    assert len(records) == 1
    # The record numbering unit tells which reader ran.
    assert records[0].line == (2 if expected_format == "csv" else 1)


def test_it_reads_a_json_file_named_json_that_holds_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "export.json", jsonl_bytes([native_row(), native_row(response_b="3")]))
    assert [record.response_b for record in parse_all(path)] == ["5", "3"]


def test_it_reads_a_caller_file_object_from_its_position_and_leaves_it_open() -> None:
    stream = io.BytesIO(b"ignored header bytes" + jsonl_bytes([native_row()]))
    stream.seek(len(b"ignored header bytes"))
    records = parse_all(stream, filename="upload.jsonl")
    assert len(records) == 1
    assert not stream.closed


def test_it_reads_a_non_seekable_gzipped_parquet_stream() -> None:
    rows = generate_demo_pairs(30)
    stream = UnseekableStream(gzip.compress(parquet_bytes(rows)))
    assert [record.external_id for record in parse_all(cast(IO[bytes], stream))] == [
        row["external_id"] for row in rows
    ]


def test_it_streams_records_before_reading_the_whole_file() -> None:
    line = json.dumps(native_row()).encode() + b"\n"
    endless = EndlessStream(line)

    records = iter_pair_records(cast(IO[bytes], endless), filename="x.jsonl")
    first = list(itertools.islice(records, 3))

    assert [record.line for record in first] == [1, 2, 3]
    assert endless.bytes_served < 4 * MiB


def test_it_rejects_a_text_mode_file_object() -> None:
    with pytest.raises(TypeError, match="binary"):
        parse_all(cast(IO[bytes], io.StringIO("{}")))


# Row shapes


def test_native_rows_accept_a_prompt_and_the_preferred_label() -> None:
    rows = [
        {"prompt": "Hi?", "response_a": "Hello", "response_b": "Go away", "preferred": "A"},
        {"prompt": "Hi?", "response_a": "Yo", "response_b": "Hey", "preferred": "tie"},
        {
            "prompt": "Hi?",
            "response_a": "No",
            "response_b": "Hi!",
            "preferred": "b",
            "external_id": 42,
        },
    ]
    records = parse_all(io.BytesIO(jsonl_bytes(rows)))
    assert [record.silver_preference for record in records] == [1, 0, -1]
    assert records[0].conversation == ({"role": "user", "content": "Hi?"},)
    assert records[2].external_id == "42"


def test_native_rows_keep_the_five_attributes_nested_or_flat(tmp_path: Path) -> None:
    nested = native_row(
        attributes={"task_category": "math", "objectivity": "objective"}, controversiality="low"
    )
    flat = {
        "prompt": "Q",
        "response_a": "x",
        "response_b": "y",
        "task_category": "code",
        "desired_attributes": "correctness",
        "annotation_guideline": "",
    }
    as_list = native_row(attributes={"desired_attributes": ["helpfulness", "brevity"]})
    records = parse_all(io.BytesIO(jsonl_bytes([nested, flat, as_list])))
    assert records[0].attributes == {
        "task_category": "math",
        "objectivity": "objective",
        "controversiality": "low",
    }
    assert records[1].attributes == {"task_category": "code", "desired_attributes": "correctness"}
    assert records[2].attributes == {"desired_attributes": ["helpfulness", "brevity"]}


def test_csv_rows_may_use_a_prompt_column_and_flat_attributes(tmp_path: Path) -> None:
    data = (
        b"id,prompt,response_a,response_b,task_category,silver_preference,source\n"
        b"7,Capital of France?,Paris,Lyon,factual,2,quiz\n"
        b"8,Capital of Peru?,Quito,Lima,factual,,\n"
    )
    records = parse_all(write(tmp_path / "pairs.csv", data))
    assert [comparable(record) for record in records] == [
        {
            "conversation": [{"role": "user", "content": "Capital of France?"}],
            "response_a": "Paris",
            "response_b": "Lyon",
            "external_id": None,
            "source": "quiz",
            "attributes": {"task_category": "factual"},
            "silver_preference": 2,
        },
        {
            "conversation": [{"role": "user", "content": "Capital of Peru?"}],
            "response_a": "Quito",
            "response_b": "Lima",
            "external_id": None,
            "source": None,
            "attributes": {"task_category": "factual"},
            "silver_preference": None,
        },
    ]


def test_hf_message_lists_share_a_prefix_and_chosen_becomes_a() -> None:
    prefix = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another?"},
    ]
    row = {
        "chosen": [*prefix, {"role": "assistant", "content": "11"}],
        "rejected": [*prefix, {"role": "assistant", "content": "9"}],
        "source": "skywork",
    }
    (record,) = parse_all(io.BytesIO(jsonl_bytes([row])))
    assert record.conversation == tuple(prefix)
    assert (record.response_a, record.response_b) == ("11", "9")
    assert record.silver_preference == 1
    assert record.raw_format == "hf_messages"
    assert record.source == "skywork"


def test_hf_rows_with_a_prompt_string_or_a_prompt_message_list() -> None:
    as_strings = {"prompt": "Say yes", "chosen": "Yes", "rejected": "No"}
    conversational = {
        "prompt": [{"role": "user", "content": "Say yes"}],
        "chosen": [{"role": "assistant", "content": "Yes"}],
        "rejected": [{"role": "assistant", "content": "No"}],
    }
    records = parse_all(io.BytesIO(jsonl_bytes([as_strings, conversational])))
    assert [comparable(record) for record in records][0] == comparable(records[1])
    assert records[0].content_hash == records[1].content_hash
    assert {record.raw_format for record in records} == {"hf_messages"}


def test_a_prompt_string_beside_message_lists_that_repeat_it_imports_once() -> None:
    """UltraFeedback-binarized and many Hugging Face sets give the prompt as text and repeat
    it as the message lists' first user turn (review 19: refused, "prompt must be a list")."""
    chosen = [{"role": "user", "content": "Say yes"}, {"role": "assistant", "content": "Yes"}]
    rejected = [{"role": "user", "content": "Say yes"}, {"role": "assistant", "content": "No"}]
    repeated = {"prompt": "Say yes\n", "chosen": chosen, "rejected": rejected}
    answers_only = {"prompt": "Say yes", "chosen": chosen[1:], "rejected": rejected[1:]}
    plain = {"prompt": "Say yes", "chosen": "Yes", "rejected": "No"}
    records = parse_all(io.BytesIO(jsonl_bytes([repeated, answers_only, plain])))
    assert len({record.content_hash for record in records}) == 1
    assert records[0].conversation == ({"role": "user", "content": "Say yes"},)

    other = {**repeated, "prompt": "Say no"}
    with pytest.raises(ImportFormatError, match="prompt is text that is not a user turn"):
        parse_all(io.BytesIO(jsonl_bytes([other])))


def test_hf_message_lists_in_csv_and_parquet_columns(tmp_path: Path) -> None:
    chosen = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    rejected = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]
    out = io.StringIO()
    csv.writer(out).writerows([["chosen", "rejected"], [json.dumps(chosen), json.dumps(rejected)]])
    from_csv = parse_all(write(tmp_path / "p.csv", out.getvalue().encode()))
    from_parquet = parse_all(
        write(tmp_path / "p.parquet", parquet_bytes([{"chosen": chosen, "rejected": rejected}]))
    )
    for records in (from_csv, from_parquet):
        assert [(r.response_a, r.response_b, r.raw_format) for r in records] == [
            ("4", "5", "hf_messages")
        ]


def test_hh_rlhf_transcripts_split_into_turns() -> None:
    shared = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell a joke"
    row = {
        "chosen": shared + "\n\nAssistant: Why did the chicken...",
        "rejected": shared + "\n\nAssistant: No.",
    }
    (record,) = parse_all(io.BytesIO(jsonl_bytes([row])))
    assert record.conversation == (
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell a joke"},
    )
    assert (record.response_a, record.response_b) == ("Why did the chicken...", "No.")
    assert record.raw_format == "hh_rlhf"
    assert record.silver_preference == 1


def test_hh_rlhf_keeps_a_repeated_assistant_marker_inside_the_reply() -> None:
    shared = "\n\nHuman: Question?"
    row = {
        "chosen": shared + "\n\nAssistant: Part one.\n\nAssistant: Part two.",
        "rejected": shared + "\n\nAssistant: Other.",
    }
    (record,) = parse_all(io.BytesIO(jsonl_bytes([row])))
    assert record.response_a == "Part one.\n\nAssistant: Part two."


def test_hh_rlhf_rows_that_diverge_before_the_last_turn_are_rejected() -> None:
    row = {
        "chosen": "\n\nHuman: A\n\nAssistant: B\n\nHuman: C\n\nAssistant: D",
        "rejected": "\n\nHuman: A\n\nAssistant: X\n\nHuman: C\n\nAssistant: Y",
    }
    with pytest.raises(ImportFormatError, match="line 1: chosen and rejected must share"):
        parse_all(io.BytesIO(jsonl_bytes([row])))


def test_lenient_role_names_map_to_user_and_assistant() -> None:
    row = native_row(
        conversation=[
            {"role": "Human", "content": "Hi"},
            {"role": "gpt", "content": "Hello"},
            {"role": "human", "content": "Bye?"},
        ]
    )
    (record,) = parse_all(io.BytesIO(jsonl_bytes([row])))
    assert [turn["role"] for turn in record.conversation] == ["user", "assistant", "user"]


def test_the_real_hh_rlhf_file_parses_including_four_empty_chosen_replies() -> None:
    records = parse_all(HH_RLHF_TEST)

    # These four rows' chosen transcripts end with an empty "Assistant:" turn: in hh-rlhf,
    # saying nothing was sometimes the preferred action, so the row is kept as it is.
    assert [record.line for record in records if record.response_a == ""] == [87, 517, 926, 1104]
    assert len(records) == 2_312
    assert len({record.content_hash for record in records}) == 2_312
    assert all(record.conversation[-1]["role"] == "user" for record in records)
    assert all(record.raw_format == "hh_rlhf" for record in records)
    assert sum(len(record.conversation) > 1 for record in records) > 1_000


# Broken files


def errors_of(
    data: bytes, name: str = "pairs.jsonl", match: str = r"^(line|item|row) \d+: ", **kwargs: Any
) -> ImportFormatError:
    """The error parsing `data` raises; by default one that names the line, item or row."""
    with pytest.raises(ImportFormatError, match=match) as caught:
        parse_all(io.BytesIO(data), filename=name, **kwargs)
    return caught.value


def test_bad_json_names_its_line() -> None:
    data = jsonl_bytes([native_row()] * 16) + b'{"prompt": "x", "response_a": \n'
    error = errors_of(data + jsonl_bytes([native_row()]))
    assert error.line == 17
    assert str(error).startswith("line 17: invalid JSON")


@pytest.mark.parametrize(
    "row, message",
    [
        (native_row(response_b=None), "missing field response_b"),
        (
            {"conversation": [{"role": "user", "content": "x"}], "response_a": "a"},
            "missing field response_b",
        ),
        ({"response_a": "a", "response_b": "b"}, "missing field conversation (or prompt)"),
        (native_row(response_b=" \n"), "response_b is empty"),
        (native_row(response_a=4), "response_a must be a string, got int"),
        (
            native_row(response_a="same", response_b="same"),
            "response_a and response_b are identical",
        ),
        (native_row(conversation="Hi"), "conversation must be a list of messages, got string"),
        (native_row(conversation=[]), "conversation is empty"),
        (
            native_row(conversation=[{"role": "robot", "content": "x"}]),
            "conversation[0].role 'robot' is not one of system, user, assistant",
        ),
        (
            native_row(conversation=[{"role": ["user"], "content": "x"}]),
            "conversation[0].role ['user'] is not one of system, user, assistant",
        ),
        (
            native_row(conversation=[{"role": "user", "content": ["x"]}]),
            "conversation[0].content must be a string, got list",
        ),
        (native_row(conversation=[{"role": "user"}]), "conversation[0] is missing content"),
        (
            native_row(
                conversation=[
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            ),
            "conversation must end with a user turn",
        ),
        (native_row(prompt="also"), "give either conversation or prompt, not both"),
        (native_row(silver_preference=3), "silver_preference must be an integer from -2 to 2"),
        (native_row(silver_preference=True), "silver_preference must be an integer from -2 to 2"),
        (native_row(preferred="left"), "preferred must be 'a', 'b' or 'tie'"),
        (native_row(attributes={"topic": "x"}), "unknown attribute 'topic'"),
        (native_row(attributes={"objectivity": 1}), "attributes.objectivity must be a string"),
        (native_row(external_id=["x"]), "external_id must be a string, got list"),
        (native_row(response_a="a\x00b"), "response_a contains a NUL character"),
        ({"chosen": "x"}, "missing field rejected"),
        (
            {"chosen": [{"role": "user", "content": "q"}], "rejected": "r"},
            "chosen and rejected must both be message lists or both be strings",
        ),
        ({"chosen": "Just text", "rejected": "More text"}, "chosen is not an hh-rlhf transcript"),
        ({"text": "hello"}, "row has neither response_a/response_b nor chosen/rejected"),
        (["a", "b"], "expected a JSON object, got list"),
    ],
)
def test_it_rejects_an_invalid_row_naming_its_line(row: Any, message: str) -> None:
    error = errors_of(jsonl_bytes([native_row(), native_row(response_b="6"), row]))
    assert error.line == 3
    assert str(error).startswith(f"line 3: {message}")


def test_a_response_over_the_field_limit_is_rejected() -> None:
    limits = ImportLimits(max_field_chars=100)
    error = errors_of(jsonl_bytes([native_row(response_a="x" * 101)]), limits=limits)
    assert str(error) == "line 1: response_a is longer than 100 characters"


def test_a_short_attribute_longer_than_its_column_is_rejected() -> None:
    rows = [native_row(), native_row(attributes={"task_category": "c" * 101})]
    error = errors_of(jsonl_bytes(rows))
    assert str(error) == "line 2: attributes.task_category is longer than 100 characters"
    flat = {**native_row(), "objectivity": "o" * 101}
    assert str(errors_of(jsonl_bytes([flat]))).startswith("line 1: attributes.objectivity is")
    at_the_limit = native_row(
        attributes={"controversiality": "c" * 100, "annotation_guideline": "g" * 1000}
    )
    (record,) = iter_pair_records(io.BytesIO(jsonl_bytes([at_the_limit])), filename="p.jsonl")
    assert record.attributes["controversiality"] == "c" * 100


def test_json_errors_name_the_array_item() -> None:
    items = [json.dumps(native_row()), json.dumps(native_row(response_b="")), "{broken"]
    error = errors_of(("[" + ",".join(items) + "]").encode(), "pairs.json")
    assert str(error) == "item 2: response_b is empty"
    syntax = errors_of(("[" + ",".join([items[0], items[2]]) + "]").encode(), "pairs.json")
    assert syntax.line == 2
    assert str(syntax).startswith("item 2: invalid JSON")


def test_text_with_lone_surrogates_is_rejected() -> None:
    # The standard library decodes "\ud800" into a str that no database can store.
    item = '{"prompt": "q", "response_a": "a\\ud800", "response_b": "b"}'
    in_json = errors_of(f"[{item}]".encode(), "pairs.json")
    assert str(in_json).startswith("item 1: response_a is not valid Unicode")
    in_jsonl = errors_of(item.encode() + b"\n")
    # orjson refuses it while decoding, the standard library only when hashing.
    assert str(in_jsonl).startswith(("line 1: invalid JSON", "line 1: text is not valid"))


@pytest.mark.parametrize(
    "fields, field",
    [
        ('"source": "s\\ud800"', "source"),
        ('"external_id": "\\udfff"', "external_id"),
        ('"attributes": {"objectivity": "o\\ud800"}', "attributes.objectivity"),
        ('"annotation_guideline": "\\ud800 long"', "attributes.annotation_guideline"),
        ('"attributes": {"desired_attributes": ["\\ud800"]}', "attributes.desired_attributes"),
    ],
)
def test_lone_surrogates_in_fields_that_are_not_hashed_are_rejected_naming_the_field(
    fields: str, field: str
) -> None:
    # Nothing hashes these fields, so only their own check stops "\ud800" before PostgreSQL.
    item = '{"prompt": "q", "response_a": "a", "response_b": "b", ' + fields + "}"
    error = errors_of(f"[{item}]".encode(), "pairs.json")
    assert str(error).startswith(f"item 1: {field} is not valid Unicode")


def test_lone_surrogates_in_a_csv_json_cell_are_rejected_naming_the_line() -> None:
    data = 'prompt,response_a,response_b,attributes\nq,a,b,"{""objectivity"": ""\\ud800""}"\n'
    error = errors_of(data.encode(), "pairs.csv")
    assert str(error).startswith("line 2: attributes.objectivity is not valid Unicode")


DEEP = "[" * 100_000  # the standard library's decoder recurses once per level


@pytest.mark.parametrize(
    "data, column",
    [
        (f"conversation,response_a,response_b\n{DEEP},a,b\n", "conversation"),
        (f"chosen,rejected\n{DEEP},r\n", "chosen"),
        (f"prompt,response_a,response_b,attributes\nq,a,b,{DEEP}\n", "attributes"),
    ],
)
def test_a_csv_json_cell_nested_too_deeply_is_rejected_naming_the_line(
    data: str, column: str
) -> None:
    error = errors_of(data.encode(), "pairs.csv")
    assert str(error) == f"line 2: {column} is nested too deeply"


def test_a_json_object_without_data_or_pairs_is_rejected() -> None:
    errors_of(
        json.dumps({"rows": [native_row()]}).encode(), "pairs.json",
        match='^the JSON object has no "data" or "pairs" array$',
    )


def test_csv_errors_name_the_line_and_the_header_must_fit_a_shape() -> None:
    bad_row = errors_of(b"prompt,response_a,response_b\nq,a,b\nq,a\n", "pairs.csv")
    assert str(bad_row) == "line 3: has 2 fields but the header has 3"
    empty = errors_of(b"prompt,response_a,response_b\nq,a,b\nq,,b\n", "pairs.csv")
    assert str(empty) == "line 3: response_a is empty"
    bad_json = errors_of(b"conversation,response_a,response_b\n[oops,a,b\n", "pairs.csv")
    assert str(bad_json).startswith("line 2: conversation is not valid JSON")
    bad_header = errors_of(b"question,answer\nq,a\n", "pairs.csv")
    assert bad_header.line == 1
    assert "needs response_a and response_b columns, or chosen and rejected" in str(bad_header)


@pytest.mark.parametrize(
    ("separator", "said"), [(b";", "separated by ';'"), (b"\t", "separated by a tab")]
)
def test_a_csv_separated_otherwise_says_so(separator: bytes, said: str) -> None:
    header = separator.join([b"prompt", b"response_a", b"response_b"])
    error = errors_of(header + b"\n" + separator.join([b"q", b"a", b"b"]) + b"\n", "pairs.csv")
    assert error.line == 1
    assert said in str(error) and "commas between columns" in str(error)
    plain = errors_of(b"question,answer\nq,a\n", "pairs.csv")
    assert "separated by" not in str(plain)


def test_parquet_without_pair_columns_is_rejected_before_reading_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "p.parquet", parquet_bytes([{"prompt": "q", "answer": "a"}]))
    with pytest.raises(ImportFormatError, match="found: prompt, answer") as caught:
        parse_all(path)
    assert caught.value.line is None


def test_parquet_row_counts_are_checked_from_the_footer(tmp_path: Path) -> None:
    path = write(tmp_path / "p.parquet", parquet_bytes(generate_demo_pairs(12)))
    seen = []
    with pytest.raises(ImportFormatError, match="file has 12 rows, over the limit of 10"):
        for record in iter_pair_records(path, limits=ImportLimits(max_rows=10)):
            seen.append(record)
    assert seen == []


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    rows = [native_row(), native_row(response_b="6"), native_row(response_a="")]
    error = errors_of(parquet_bytes(rows), "p.parquet")
    assert str(error) == "row 3: response_a is empty"


def test_a_file_that_is_not_parquet_but_named_so_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="named .parquet but is not Parquet"):
        parse_all(write(tmp_path / "p.parquet", jsonl_bytes([native_row()])))


def test_max_rows_stops_a_jsonl_file() -> None:
    rows = [native_row(response_b=f"answer {n}") for n in range(6)]
    limits = ImportLimits(max_rows=5)
    errors_of(jsonl_bytes(rows), limits=limits, match="^file has more than 5 rows$")


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    packed = gzip.compress(jsonl_bytes(generate_demo_pairs(200)))
    path = write(tmp_path / "pairs.jsonl.gz", packed[: len(packed) // 2])
    with pytest.raises(ImportFormatError, match="gzip data is truncated"):
        parse_all(path)


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(jsonl_bytes(generate_demo_pairs(50))))
    packed[30:60] = bytes(30)
    with pytest.raises(ImportFormatError, match="gzip data is corrupt"):
        parse_all(write(tmp_path / "pairs.jsonl.gz", bytes(packed)))


def test_a_gzip_bomb_is_stopped_at_the_decompressed_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "zeros.jsonl.gz", bytes(50 * MiB), gzipped=True)
    with pytest.raises(
        ImportFormatError, match="decompressed size exceeds the limit of 1,048,576 bytes"
    ):
        parse_all(path, limits=ImportLimits(max_decompressed_bytes=MiB))


def test_a_gzip_bomb_is_detected_without_reading_it_all() -> None:
    # Concatenated gzip members are one valid stream: 4 GiB of zeros in about 4 MiB.
    member = gzip.compress(bytes(MiB))
    bomb = CountingBytesIO(member * 4096)
    with pytest.raises(ImportFormatError, match="decompressed size exceeds"):
        parse_all(
            bomb, filename="bomb.jsonl.gz", limits=ImportLimits(max_decompressed_bytes=2 * MiB)
        )
    assert bomb.bytes_read < len(bomb.getvalue()) // 2


def test_an_oversized_file_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "big.jsonl", jsonl_bytes([native_row()] * 100))
    with pytest.raises(ImportFormatError, match=r"file is \d[\d,]* bytes, over the limit of 1,000"):
        parse_all(path, limits=ImportLimits(max_bytes=1000))


def test_an_oversized_stream_of_unknown_size_is_stopped_while_reading() -> None:
    stream = UnseekableStream(jsonl_bytes([native_row()] * 10_000))
    with pytest.raises(ImportFormatError, match="file is larger than the limit of 10,000"):
        limits = ImportLimits(max_bytes=10_000)
        parse_all(cast(IO[bytes], stream), filename="x.jsonl", limits=limits)


def test_a_line_longer_than_the_row_limit_is_rejected() -> None:
    error = errors_of(
        jsonl_bytes([native_row()]) + b"[" * 5000 + b"\n", limits=ImportLimits(max_row_bytes=1024)
    )
    assert str(error) == "line 2: line is longer than 1,024 bytes"


def test_invalid_rows_can_be_collected_and_skipped() -> None:
    rows = [native_row(), native_row(response_b=""), native_row(response_b="7")]
    data = jsonl_bytes(rows[:2]) + b"not json\n" + jsonl_bytes(rows[2:])
    skipped: list[ImportFormatError] = []
    records = parse_all(io.BytesIO(data), on_invalid_row=skipped.append)
    assert [record.line for record in records] == [1, 4]
    assert [str(error) for error in skipped][0] == "line 2: response_b is empty"
    assert skipped[1].line == 3


# Content hash


def test_content_hash_is_sha256_of_a_reproducible_canonical_json() -> None:
    conversation = [{"role": "user", "content": 'Ünïcode \u2028 "quoted"\n', "name": "x"}]
    canonical = json.dumps(
        {
            "conversation": [{"content": conversation[0]["content"], "role": "user"}],
            "response_a": "a\tb",
            "response_b": "😀",
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert content_hash(conversation, "a\tb", "😀") == hashlib.sha256(canonical).hexdigest()


def test_content_hash_depends_on_orientation_and_every_part() -> None:
    conversation = [{"role": "user", "content": "q"}]
    base = content_hash(conversation, "a", "b")
    assert content_hash(conversation, "b", "a") != base
    assert content_hash([{"role": "system", "content": "q"}], "a", "b") != base
    assert content_hash(conversation, "a", "b ") != base


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        ImportLimits(max_rows=0)


# Test doubles for the standard library's file protocol (not for our code).


class UnseekableStream(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


class EndlessStream(io.RawIOBase):
    """Repeats one line for ever; reading it all would never finish."""

    def __init__(self, line: bytes) -> None:
        self._chunk = line * (65536 // len(line) + 1)
        self.bytes_served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        # Keep line boundaries aligned by rotating the chunk.
        self._chunk = self._chunk[size:] + self._chunk[:size]
        self.bytes_served += size
        return size


class CountingBytesIO(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def readinto(self, buffer: Any) -> int:
        size = super().readinto(buffer)
        self.bytes_read += size
        return size

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_a_file_that_is_no_file_of_pairs_says_what_the_importer_reads() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
    for data, name in ((png, "photo.png"), (b"Dear team\nhere are my notes.\n", "notes.txt")):
        error = errors_of(data, name, match="not a file of pairs")
        assert error.line is None
        assert "JSONL, JSON, CSV or Parquet, optionally gzip-compressed" in str(error)
    # A CSV under another name, or none, is still read as CSV.
    assert len(parse_all(io.BytesIO(b"prompt,response_a,response_b\nhi,a,b\n"))) == 1
