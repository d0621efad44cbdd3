"""build.mode native: the appliance made without a build VM (build.py), in a network namespace (netns.py) and a
systemd-nspawn container (container.py), its disk made bootable from the tree (bootdisk.py), a vagrant-libvirt box
(libvirt_box.py), and one throwaway QEMU boot to verify it (qemuboot.py). docs/native-build.md tells the story."""
