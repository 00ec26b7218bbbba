################################################################################
#
# alertmanager
#
################################################################################

ALERTMANAGER_VERSION = 0.33.1
ALERTMANAGER_ARCH = $(if $(BR2_aarch64),arm64,amd64)
ALERTMANAGER_SOURCE = alertmanager-$(ALERTMANAGER_VERSION).linux-$(ALERTMANAGER_ARCH).tar.gz
ALERTMANAGER_SITE = https://github.com/prometheus/alertmanager/releases/download/v$(ALERTMANAGER_VERSION)
ALERTMANAGER_LICENSE = Apache-2.0

define ALERTMANAGER_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/alertmanager $(TARGET_DIR)/usr/bin/alertmanager
	$(INSTALL) -D -m 0755 $(@D)/amtool $(TARGET_DIR)/usr/bin/amtool
endef

$(eval $(generic-package))
