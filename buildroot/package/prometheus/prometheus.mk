################################################################################
#
# prometheus
#
################################################################################

PROMETHEUS_VERSION = 3.12.0
PROMETHEUS_ARCH = $(if $(BR2_aarch64),arm64,amd64)
PROMETHEUS_SOURCE = prometheus-$(PROMETHEUS_VERSION).linux-$(PROMETHEUS_ARCH).tar.gz
PROMETHEUS_SITE = https://github.com/prometheus/prometheus/releases/download/v$(PROMETHEUS_VERSION)
PROMETHEUS_LICENSE = Apache-2.0

define PROMETHEUS_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/prometheus $(TARGET_DIR)/usr/bin/prometheus
	$(INSTALL) -D -m 0755 $(@D)/promtool $(TARGET_DIR)/usr/bin/promtool
endef

$(eval $(generic-package))
