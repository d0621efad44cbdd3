"""Publish the exported disk image to an OpenStack cloud's Image service (Glance) with openstacksdk.

    request = PublishRequest(image_name="hub-debian-12-20261125-5a923d49", file=Path("builds/vm/hub.qcow2"),
                             digest=<sha256 of the file, as the export recorded it>, cloud="mycloud")
    plan(request)                      # the lines a dry run prints; connects to nothing
    publish(request, run=sh.run, say=log.say)

The cloud is read as the openstack CLI reads it: a named cloud of clouds.yaml, or, with no name, OS_CLOUD or the
OS_* variables of an openrc file. What publish does, in order:

1. Lists the images of that name. An active one with the same digest (our property ``hubvm_digest``) and disk
   format is reported and nothing is uploaded. Images of ours that never became active (a publish interrupted
   by a dead server or a killed client) are deleted. Another active image of that name stops the run unless
   ``replace`` is set (without it there would be two images of one name, and `--image NAME` would be ambiguous);
   one that hubvm did not publish stops it even then.
2. With disk format raw (what Ceph-backed clouds want) and a qcow2 file: converts it with ``qemu-img convert``
   through the caller's ``run``, so --dry and MockContext see the command; the raw file is removed afterwards.
3. Creates the image record and streams the file to it in 1 MiB blocks, hashing each block (sha256, sha512, md5)
   and printing progress (bytes, rate, time left) every few seconds, then the duration.
4. Waits for ``active`` and compares Glance's ``os_hash_value`` (sha512, or the algorithm Glance names) with the
   local one; when the uploaded file is the export's own, its sha256 must also equal the digest.
5. With ``replace``: only now, with the new image active and checked, renames the older active images of that
   name to ``<name>-replaced-<UTC time>`` (kept, not deleted: servers booted from them can still be rebuilt;
   the output says how to delete them).

Any failure after the record was created deletes it; when the server is unreachable by then, the error line says
so and the next publish removes the leftover. Failures are one-line `UserError`s (errors.py); openstacksdk is
imported only when publish runs, so importing this package (and `hubvm --list`) stays fast.

request.py: what to publish (the request, the export's facts and defaults, the plan); upload.py: the upload and
its checks; errors.py: every failure as one line; run.py: the `publish` task.
"""
