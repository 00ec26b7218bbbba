################################################################################
#
# obsbox
#
################################################################################

# The one place the version is kept (image/stamp-firmware writes the same
# into firmware.json).
OBSBOX_VERSION = $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' \
	$(BR2_EXTERNAL_OBSBOX_PATH)/../Cargo.toml | head -n 1)
OBSBOX_SITE = $(BR2_EXTERNAL_OBSBOX_PATH)/..
OBSBOX_SITE_METHOD = local
OBSBOX_LICENSE = MIT
OBSBOX_LICENSE_FILES = LICENSE

# Build output and local run data of a development checkout.
OBSBOX_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude target \
	--exclude obsbox-data \
	--exclude node_modules

# The cargo infrastructure vendors a crate's dependencies in its download
# step, which a local source does not have: vendor them here, before the
# offline build. This step needs network access once per DL_DIR.
define OBSBOX_VENDOR_CRATES
	mkdir -p $(@D)/.cargo
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor --locked VENDOR > $(@D)/.cargo/config.toml
endef
OBSBOX_PRE_BUILD_HOOKS += OBSBOX_VENDOR_CRATES

OBSBOX_BUNDLE_PUBLIC_KEY = $(call qstrip,$(BR2_PACKAGE_OBSBOX_BUNDLE_PUBLIC_KEY))
ifneq ($(OBSBOX_BUNDLE_PUBLIC_KEY),)
define OBSBOX_INSTALL_BUNDLE_PUBLIC_KEY
	$(INSTALL) -D -m 0644 $(OBSBOX_BUNDLE_PUBLIC_KEY) \
		$(TARGET_DIR)/etc/obsbox/bundle.pub
endef
OBSBOX_POST_INSTALL_TARGET_HOOKS += OBSBOX_INSTALL_BUNDLE_PUBLIC_KEY
endif

$(eval $(cargo-package))
