################################################################################
#
# prometheus-node-exporter
#
################################################################################

PROMETHEUS_NODE_EXPORTER_VERSION = 1.10.2
PROMETHEUS_NODE_EXPORTER_ARCH = $(if $(BR2_aarch64),arm64,amd64)
PROMETHEUS_NODE_EXPORTER_SOURCE = node_exporter-$(PROMETHEUS_NODE_EXPORTER_VERSION).linux-$(PROMETHEUS_NODE_EXPORTER_ARCH).tar.gz
PROMETHEUS_NODE_EXPORTER_SITE = https://github.com/prometheus/node_exporter/releases/download/v$(PROMETHEUS_NODE_EXPORTER_VERSION)
PROMETHEUS_NODE_EXPORTER_LICENSE = Apache-2.0

define PROMETHEUS_NODE_EXPORTER_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/node_exporter $(TARGET_DIR)/usr/bin/node_exporter
endef

$(eval $(generic-package))
