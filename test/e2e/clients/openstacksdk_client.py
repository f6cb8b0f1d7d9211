"""Drives Glimpse with openstacksdk, as an unmodified client would, for the e2e suite.

Usage: openstacksdk_client.py <endpoint> <scenario> [argument]

Scenarios print one JSON object on standard output:
  glance-direct <file>   create, stage the file, import with glance-direct, wait until active
  web-download <uri>     create, import with web-download from the URI, wait until active
  upload <file>          create with the data (PUT /file), then download it back
The endpoint is reached without Keystone (auth type none); noauth mode treats it as admin.
"""

import hashlib
import json
import sys
import time
import uuid

import openstack

TIMEOUT_SECONDS = 30


def connect(endpoint):
    return openstack.connection.Connection(
        auth_type="none",
        auth={"endpoint": endpoint},
        image_endpoint_override=endpoint,
    )


def unique(name):
    # The SDK's create_image returns an existing image of the same name instead of a new one.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def wait_until_active(conn, image):
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        image = conn.image.get_image(image)
        if image.status == "active":
            return image
        time.sleep(0.1)
    raise SystemExit(f"image {image.id} is {image.status} after {TIMEOUT_SECONDS} s")


def summary(image, **extra):
    return {
        "id": image.id,
        "status": image.status,
        "size": image.size,
        "checksum": image.checksum,
        "os_hash_value": image.hash_value,
        **extra,
    }


def glance_direct(conn, path):
    image = conn.image.create_image(name=unique("sdk-direct"), disk_format="raw", container_format="bare")
    with open(path, "rb") as data:
        conn.image.stage_image(image, data=data)
    staged = conn.image.get_image(image).status
    conn.image.import_image(image, method="glance-direct")
    return summary(wait_until_active(conn, image), staged_status=staged)


def web_download(conn, uri):
    image = conn.image.create_image(name=unique("sdk-web"), disk_format="raw", container_format="bare")
    conn.image.import_image(image, method="web-download", uri=uri)
    return summary(wait_until_active(conn, image))


def upload(conn, path):
    with open(path, "rb") as data:
        image = conn.image.create_image(
            name=unique("sdk-upload"), disk_format="raw", container_format="bare", data=data
        )
    image = wait_until_active(conn, image)
    # The SDK checks the body against the image's checksum as it downloads.
    downloaded = conn.image.download_image(image)
    return summary(image, downloaded_md5=hashlib.md5(downloaded.content).hexdigest())


SCENARIOS = {"glance-direct": glance_direct, "web-download": web_download, "upload": upload}


def main():
    endpoint, scenario, argument = sys.argv[1:4]
    print(json.dumps(SCENARIOS[scenario](connect(endpoint), argument)))


if __name__ == "__main__":
    main()
