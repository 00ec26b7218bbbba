################################################################################
#
# loki
#
################################################################################

LOKI_VERSION = 3.7.8
LOKI_ARCH = $(if $(BR2_aarch64),arm64,amd64)
LOKI_SOURCE = loki-linux-$(LOKI_ARCH).zip
LOKI_SITE = https://github.com/grafana/loki/releases/download/v$(LOKI_VERSION)
LOKI_LICENSE = AGPL-3.0

# The release archive is a zip holding the one binary.
define LOKI_EXTRACT_CMDS
	$(UNZIP) $(LOKI_DL_DIR)/$(LOKI_SOURCE) -d $(@D)
endef

define LOKI_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/loki-linux-$(LOKI_ARCH) $(TARGET_DIR)/usr/bin/loki
endef

$(eval $(generic-package))
