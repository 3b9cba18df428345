"""Path helpers: atomic, merging result files."""


def test_update_json_keeps_rows_another_process_wrote(tmp_path):
    import json

    from tap.paths import update_json

    path = tmp_path / "rows.json"
    update_json(path, "a", 1)
    path.write_text(json.dumps({"a": 1, "b": 2}))  # another run added "b" meanwhile
    assert update_json(path, "c", 3) == {"a": 1, "b": 2, "c": 3}
    assert json.loads(path.read_text()) == {"a": 1, "b": 2, "c": 3}
