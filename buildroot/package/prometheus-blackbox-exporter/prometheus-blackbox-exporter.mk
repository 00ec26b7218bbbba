################################################################################
#
# prometheus-blackbox-exporter
#
################################################################################

PROMETHEUS_BLACKBOX_EXPORTER_VERSION = 0.29.0
PROMETHEUS_BLACKBOX_EXPORTER_ARCH = $(if $(BR2_aarch64),arm64,amd64)
PROMETHEUS_BLACKBOX_EXPORTER_SOURCE = blackbox_exporter-$(PROMETHEUS_BLACKBOX_EXPORTER_VERSION).linux-$(PROMETHEUS_BLACKBOX_EXPORTER_ARCH).tar.gz
PROMETHEUS_BLACKBOX_EXPORTER_SITE = https://github.com/prometheus/blackbox_exporter/releases/download/v$(PROMETHEUS_BLACKBOX_EXPORTER_VERSION)
PROMETHEUS_BLACKBOX_EXPORTER_LICENSE = Apache-2.0

define PROMETHEUS_BLACKBOX_EXPORTER_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/blackbox_exporter $(TARGET_DIR)/usr/bin/blackbox_exporter
endef

$(eval $(generic-package))
