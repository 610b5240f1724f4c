package dev.weir.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * Stands in for the apicurio-common-app-components-config-index Quarkus extension, whose
 * deployment module is not on Maven Central (see the pom's header). The extension would
 * list the registry's runtime-editable config properties; this local registry lists none.
 */
public class DynamicConfigPropertiesProducer {

    @Produces
    @Singleton
    public DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
