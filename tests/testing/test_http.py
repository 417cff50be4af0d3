"""Requests as cassette entries: form fields as PVE gets them, an upload's file by its name, never a header."""

from __future__ import annotations

import io

import requests
from requests_toolbelt import MultipartEncoder

from pveoci.testing.http import request_of


def prepared(method: str, url: str, **kwargs: object) -> requests.PreparedRequest:
    return requests.Request(method, url, **kwargs).prepare()  # type: ignore[arg-type]


def test_a_form_post_is_its_fields_and_headers_are_not_kept() -> None:
    request = prepared("POST", "https://pve.test:8006/api2/json/nodes/pve1/lxc?x=1",
                       data={"vmid": 100, "tags": "a;b", "net0": ["one", "two"]},
                       headers={"Authorization": "PVEAPIToken=u@pve!t=secret", "CSRFPreventionToken": "c"})
    assert request_of(request) == {"method": "POST", "path": "/nodes/pve1/lxc", "query": {"x": "1"},
                                   "body": {"vmid": "100", "tags": "a;b", "net0": ["one", "two"]}}


def test_an_upload_is_its_fields_and_its_file_name_whether_streamed_or_not() -> None:
    fields = {"content": "vztmpl", "checksum": "ab" * 32}
    small = prepared("POST", "https://pve.test:8006/api2/json/nodes/pve1/storage/local/upload", data=fields,
                     files={"filename": ("pveoci-0123.tar.zst", io.BytesIO(b"\0" * 4096), "application/octet-stream")})
    encoder = MultipartEncoder(fields={**fields, "filename": ("pveoci-0123.tar.zst", io.BytesIO(b"\0" * 4096),
                                                               "application/octet-stream")})
    streamed = prepared("POST", "https://pve.test:8006/api2/json/nodes/pve1/storage/local/upload", data=encoder,
                        headers={"Content-Type": encoder.content_type})
    expected = {"multipart": {"content": "vztmpl", "checksum": "ab" * 32, "filename": {"file": "pveoci-0123.tar.zst"}}}
    assert request_of(small)["body"] == expected
    assert request_of(streamed)["body"] == expected
