################################################################################
#
# grafana
#
################################################################################

GRAFANA_VERSION = 12.4.2
# Grafana's release archives carry the number of the CI build that made them.
GRAFANA_BUILD = 23531306697
GRAFANA_ARCH = $(if $(BR2_aarch64),arm64,amd64)
GRAFANA_SOURCE = grafana_$(GRAFANA_VERSION)_$(GRAFANA_BUILD)_linux_$(GRAFANA_ARCH).tar.gz
GRAFANA_SITE = https://dl.grafana.com/grafana/release/$(GRAFANA_VERSION)
GRAFANA_LICENSE = AGPL-3.0

define GRAFANA_INSTALL_TARGET_CMDS
	mkdir -p $(TARGET_DIR)/usr/share/grafana
	cp -a $(@D)/bin $(@D)/conf $(@D)/public $(@D)/plugins-bundled \
		$(TARGET_DIR)/usr/share/grafana/
	ln -sf ../share/grafana/bin/grafana $(TARGET_DIR)/usr/bin/grafana
endef

$(eval $(generic-package))
