//! Checks on the Kubernetes objects rudder reads from files, which no API server has validated:
//! port numbers out of range, which the model would otherwise drop without a word. The API server
//! refuses the same objects (`IsValidPortNum`), so objects read from a cluster always pass.
//! Only what rudder reads is checked.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::invalid;
use crate::inputs::FieldError;

fn validate_port_number(number: i32, field: impl FnOnce() -> String) -> Result<(), FieldError> {
    if (1..=i32::from(u16::MAX)).contains(&number) {
        Ok(())
    } else {
        Err(invalid(
            field(),
            format!("port {number} is not a port number from 1 to 65535"),
        ))
    }
}

pub fn validate_service(service: &Service) -> Result<(), FieldError> {
    let ports = service
        .spec
        .iter()
        .flat_map(|spec| spec.ports.iter().flatten());
    for (i, port) in ports.enumerate() {
        validate_port_number(port.port, || format!("spec.ports[{i}].port"))?;
        if let Some(IntOrString::Int(target)) = port.target_port {
            validate_port_number(target, || format!("spec.ports[{i}].targetPort"))?;
        }
    }
    Ok(())
}

pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Result<(), FieldError> {
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        if let Some(number) = port.port {
            validate_port_number(number, || format!("ports[{i}].port"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_numbers_out_of_range_name_the_field() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}, {"port": 80, "targetPort": 70000}]}
        }))
        .unwrap();
        let error = validate_service(&service).unwrap_err();
        assert_eq!(error.field, "spec.ports[1].targetPort");
        assert_eq!(
            error.message,
            "port 70000 is not a port number from 1 to 65535"
        );

        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1"},
            "addressType": "IPv4",
            "endpoints": [],
            "ports": [{"name": "http", "port": 0}]
        }))
        .unwrap();
        assert_eq!(
            validate_endpoint_slice(&slice).unwrap_err().field,
            "ports[0].port"
        );
    }
}
